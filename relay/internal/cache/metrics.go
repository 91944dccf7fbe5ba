package cache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	hits, misses, fetches    prometheus.Counter
	notFound, upstreamErrors prometheus.Counter
	upstreamBytes            prometheus.Counter
	resumes                  prometheus.Counter
	evictions, evictedBytes  prometheus.Counter
	diskFull                 prometheus.Counter
	verifyFailures           *prometheus.CounterVec
	objects, storedBytes     prometheus.Gauge
	partialBytes             prometheus.Gauge
	pinned, capacity         prometheus.Gauge
	hitRatio                 prometheus.GaugeFunc

	nHits, nMisses atomic.Int64
}

// countingCounter keeps its own count beside the Prometheus one, for the
// hit ratio.
type countingCounter struct {
	prometheus.Counter
	n *atomic.Int64
}

func (c countingCounter) Inc() { c.n.Add(1); c.Counter.Inc() }

func newMetrics(reg prometheus.Registerer, _ *Cache) (*metrics, error) {
	const ns, sub = "outpost", "relay_cache"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		fetches:        counter("upstream_fetches_total", "Fetches started from the file server."),
		notFound:       counter("upstream_not_found_total", "Fetches of artifacts the file server does not have."),
		upstreamErrors: counter("upstream_errors_total", "Fetches that failed because of the file server or the network."),
		upstreamBytes:  counter("upstream_bytes_total", "Bytes read from the file server (the WAN leg)."),
		resumes:        counter("upstream_resumes_total", "Upstream reads resumed by range after a broken connection."),
		evictions:      counter("evictions_total", "Objects evicted to keep the cache under its cap, or to make room on a full disk."),
		evictedBytes:   counter("evicted_bytes_total", "Bytes of objects evicted to keep the cache under its cap, or to make room on a full disk."),
		diskFull: counter("disk_full_total",
			"Fetches refused or stopped because the disk had no room for the artifact, even after evicting unpinned objects."),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "verify_failures_total",
			Help: "Fetched artifacts rejected because their SHA-256 or size did not match; never cached.",
		}, []string{"reason"}),
		objects:      gauge("objects", "Artifacts on disk."),
		storedBytes:  gauge("stored_bytes", "Bytes of artifacts on disk."),
		partialBytes: gauge("partial_bytes", "Bytes of partial fetches kept to resume that no fetch uses; they count against the cap with stored_bytes."),
		pinned:       gauge("pinned_objects", "Artifacts named by the office's policy, never evicted."),
		capacity:     gauge("max_bytes", "The cap on stored bytes; 0 means none."),
	}
	m.hits = countingCounter{counter("hits_total", "Gets served from disk."), &m.nHits}
	m.misses = countingCounter{counter("misses_total", "Gets that had to wait for or follow a fetch from the file server (shared fetches count once per Get)."), &m.nMisses}
	m.hitRatio = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "hit_ratio",
		Help: "Hits over all requests since the relay started; use rate(hits_total) for a window."},
		func() float64 {
			h, mi := m.nHits.Load(), m.nMisses.Load()
			if h+mi == 0 {
				return 0
			}
			return float64(h) / float64(h+mi)
		})
	// Both reasons exist from the start, so that an alert on a rate sees 0.
	m.verifyFailures.WithLabelValues("sha256")
	m.verifyFailures.WithLabelValues("size")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.hits, m.misses, m.fetches, m.notFound, m.upstreamErrors,
		m.upstreamBytes, m.resumes, m.evictions, m.evictedBytes, m.diskFull, m.verifyFailures, m.objects, m.storedBytes, m.partialBytes,
		m.pinned, m.capacity, m.hitRatio} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
