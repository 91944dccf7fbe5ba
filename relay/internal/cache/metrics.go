package cache

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	hits, misses, fetches    prometheus.Counter
	notFound, upstreamErrors prometheus.Counter
	upstreamBytes            prometheus.Counter
	verifyFailures           *prometheus.CounterVec
	objects, storedBytes     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "outpost", "relay_cache"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		hits:           counter("hits_total", "Gets served from disk."),
		misses:         counter("misses_total", "Gets that had to wait for a fetch from the file server (shared fetches count once per Get)."),
		fetches:        counter("upstream_fetches_total", "Fetches started from the file server."),
		notFound:       counter("upstream_not_found_total", "Fetches of artifacts the file server does not have."),
		upstreamErrors: counter("upstream_errors_total", "Fetches that failed because of the file server or the network."),
		upstreamBytes:  counter("upstream_bytes_total", "Bytes read from the file server."),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "verify_failures_total",
			Help: "Fetched artifacts rejected because their SHA-256 or size did not match; never cached.",
		}, []string{"reason"}),
		objects:     gauge("objects", "Artifacts on disk."),
		storedBytes: gauge("stored_bytes", "Bytes of artifacts on disk."),
	}
	// Both reasons exist from the start, so that an alert on a rate sees 0.
	m.verifyFailures.WithLabelValues("sha256")
	m.verifyFailures.WithLabelValues("size")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.hits, m.misses, m.fetches, m.notFound, m.upstreamErrors,
		m.upstreamBytes, m.verifyFailures, m.objects, m.storedBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
