package e2e

import (
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// BenchmarkRollout measures how long a new revision takes to reach every
// agent of one office, and what it costs the coordinator, with the
// coordinator telling a few agents and gossip doing the rest (fanout 3)
// beside the coordinator telling every agent (fanout 0). Real agents: QUIC
// to the coordinator, memberlist on 127.0.0.x, signed policy verified by
// each. Run with: make bench, or
//
//	go test -run '^$' -bench Rollout -benchtime 5x ./e2e/
func BenchmarkRollout(b *testing.B) {
	for _, n := range []int{50, 200} {
		for _, fanout := range []int{3, 0} {
			b.Run(fmt.Sprintf("agents=%d/fanout=%d", n, fanout), func(b *testing.B) { benchRollout(b, n, fanout) })
		}
	}
}

func benchRollout(b *testing.B, n, fanout int) {
	c := coordinatortest.New(b, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.PushFanout = fanout }))
	// A long interval: only pushes and gossip can deliver within the run.
	c.CreateOffice("bench", map[string]any{"checkin_interval": "1h"})
	token := c.EnrollToken("bench", "agent", n)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	agents := make([]*testAgent, n)
	for i := range n {
		ip := fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
		agents[i] = startAgent(b, c, token, fmt.Sprintf("bench-%d", i), ip)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for formed := false; !formed; {
		formed = true
		for _, a := range agents {
			if len(a.a.GossipPeers()) < n-1 {
				formed = false
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("the office's gossip did not form")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	var p50, p99, bytes float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sentBefore := c.Metric("outpost_coordinator_policy_bytes_sent_total")
		start := time.Now()
		rev := c.Apply("bench", fmt.Sprintf("items:\n  - kind: package\n    name: bench-%d\n    state: absent\n", i))
		reached := make([]time.Duration, n)
		left := n
		for left > 0 {
			if time.Since(start) > time.Minute {
				b.Fatalf("revision %d reached %d of %d agents in a minute", rev, n-left, n)
			}
			for j, a := range agents {
				if reached[j] == 0 && a.a.Revision() >= rev {
					reached[j] = time.Since(start)
					left--
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		sort.Slice(reached, func(x, y int) bool { return reached[x] < reached[y] })
		p50 += reached[n/2].Seconds()
		p99 += reached[(n*99)/100-1+boolInt(n < 100)].Seconds()
		bytes += c.Metric("outpost_coordinator_policy_bytes_sent_total") - sentBefore
	}
	b.StopTimer()
	b.ReportMetric(p50/float64(b.N), "p50-s")
	b.ReportMetric(p99/float64(b.N), "p99-s")
	b.ReportMetric(bytes/float64(b.N), "coord-policy-bytes/rollout")
	b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/float64(n), "heap-bytes/agent")
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
