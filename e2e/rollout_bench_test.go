package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/loadgen"
	"github.com/outposthq/outpost/pkg/logging"
)

// startFleet runs n real agents of one office through the load generator.
func startFleet(tb testing.TB, c *coordinatortest.Harness, office string, n int, firstIP string) *loadgen.Fleet {
	tb.Helper()
	return startFleetIn(tb, c, office, n, firstIP, tb.TempDir(), true)
}

// memDir is a temporary directory in memory (/dev/shm) when there is one.
func memDir(tb testing.TB) string {
	tb.Helper()
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return tb.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "outpost-bench-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startFleetIn(tb testing.TB, c *coordinatortest.Harness, office string, n int, firstIP, dir string, fast bool) *loadgen.Fleet {
	tb.Helper()
	f, err := loadgen.Start(context.Background(), loadgen.Config{
		Coordinator: c.QUIC, CAFingerprint: c.CA, Token: c.EnrollToken(office, "agent", n),
		Agents: n, FirstIP: firstIP, DataDir: dir, PluginsDir: plugins(tb), Prefix: office, Fast: fast,
	}, logging.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := f.Stop(); err != nil {
			tb.Errorf("fleet: %v", err)
		}
	})
	return f
}

func waitGossip(tb testing.TB, f *loadgen.Fleet, n int) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		formed := true
		for _, a := range f.Agents() {
			if len(a.GossipPeers()) < n-1 {
				formed = false
				break
			}
		}
		if formed {
			return
		}
		if time.Now().After(deadline) {
			// How many agents see how many peers: islands show as a few
			// counts far below n-1, flapping as counts just below it.
			seen := map[int]int{}
			for _, a := range f.Agents() {
				seen[len(a.GossipPeers())]++
			}
			tb.Fatalf("the office's gossip did not form: agents by peers seen %v (want %d each)", seen, n-1)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLoadgenFleetTakesARevision(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("fleet", map[string]any{"checkin_interval": "1h"})
	f := startFleet(t, c, "fleet", 6, "127.0.3.1")
	waitGossip(t, f, 6)
	start := time.Now()
	rev := c.ApplyNew("fleet", "items: []\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	took, err := f.WaitRevision(ctx, rev, start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("revision %d reached 6 agents: p50 %v, max %v", rev, loadgen.Percentile(took, 50), took[len(took)-1])
}

// BenchmarkRollout measures how long a new revision takes to reach every
// agent of one office, and what it costs the coordinator, with the
// coordinator telling a few agents and gossip doing the rest (fanout 3)
// beside the coordinator telling every agent (fanout 0). Real agents from
// the load generator: QUIC to the coordinator, memberlist on 127.0.x.y,
// signed policy verified by each. Run with: make bench, or
//
//	go test -run '^$' -bench Rollout ./e2e/
func BenchmarkRollout(b *testing.B) {
	for _, n := range []int{50, 200} {
		for _, fanout := range []int{3, 0} {
			b.Run(fmt.Sprintf("agents=%d/fanout=%d", n, fanout), func(b *testing.B) { benchRollout(b, n, fanout) })
		}
	}
}

// settleAfterJoin is how long an office of n members formed just now is
// left to settle before it is measured.
func settleAfterJoin(n int) time.Duration {
	return time.Duration(min(30, 5+n/10)) * time.Second
}

func benchRollout(b *testing.B, n, fanout int) {
	c := coordinatortest.New(b, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.PushFanout = fanout }))
	// A long interval: only pushes and gossip can deliver within the run.
	c.CreateOffice("bench", map[string]any{"checkin_interval": "1h"})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Every agent's state on one shared disk would measure that disk's
	// fsync queue, not the office: on real hosts each has its own. Keep
	// the fleet's state in memory when the machine offers it.
	// The timers of a real office network: two hundred agents with
	// loopback timers are more gossip than two cores can carry.
	f := startFleetIn(b, c, "bench", n, "127.0.4.1", memDir(b), false)
	waitGossip(b, f, n)
	// An office at work, not one still forming: the news of every member
	// joining is still going round for a while after each lists every
	// other, and a rollout in the middle of that measures the join.
	time.Sleep(settleAfterJoin(n))
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	// Each op is rolloutsPerOp rollouts, minutes apart in life and 5 s
	// apart here: the next starts after the last one's reports are in. The
	// pauses are timed too, so that the default -benchtime runs one op
	// (five rollouts) instead of tens of them: the figures are the
	// rollouts' own (p50-s and the rest), not ns/op.
	const rolloutsPerOp = 5
	var p50, p99, last, bytes float64
	b.ResetTimer()
	for range b.N * rolloutsPerOp {
		sentBefore := c.Metric("outpost_coordinator_policy_bytes_sent_total")
		start := time.Now()
		rev := c.ApplyNew("bench", "items: []\n")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		took, err := f.WaitRevision(ctx, rev, start)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		p50 += loadgen.Percentile(took, 50).Seconds()
		p99 += loadgen.Percentile(took, 99).Seconds()
		last += took[len(took)-1].Seconds()
		bytes += c.Metric("outpost_coordinator_policy_bytes_sent_total") - sentBefore
		time.Sleep(5 * time.Second)
	}
	b.StopTimer()
	rollouts := float64(b.N * rolloutsPerOp)
	b.ReportMetric(p50/rollouts, "p50-s")
	b.ReportMetric(p99/rollouts, "p99-s")
	b.ReportMetric(last/rollouts, "all-s") // the last agent: 100 %
	b.ReportMetric(bytes/rollouts, "coord-policy-bytes/rollout")
	b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/float64(n), "heap-bytes/agent")
}
