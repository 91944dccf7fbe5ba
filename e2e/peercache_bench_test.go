package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/relay"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkPeerSharing: 20 real agents of one office (memberlist on
// 127.0.2.x, the package plugin as a subprocess, their disks in /dev/shm)
// get one 128 MiB package at once, from a real relay whose egress to
// agents is capped at 50 MB/s and from each other (the office peer cache,
// with its default upload budget of 100 MB/s per artifact for the office).
// It reports the relay's egress in multiples of the package (the target is
// at most 2×), what peers sent, and the time from applying the policy
// until every agent had installed it. OUTPOST_BENCH_PEER_MIB, _AGENTS and
// _RELAY_MBPS change it; OUTPOST_BENCH_PEER_OFF=1 turns the peer cache off,
// for comparison.
func BenchmarkPeerSharing(b *testing.B) {
	sizeMiB := envInt("OUTPOST_BENCH_PEER_MIB", 128)
	n := envInt("OUTPOST_BENCH_PEER_AGENTS", 20)
	egress := envInt("OUTPOST_BENCH_PEER_RELAY_MBPS", 50)
	m := tu.StartMinIO(b)
	c := coordinatortest.New(b, coordinatortest.WithMinIO(m))
	// Short check-ins while the office forms: members that enrol at the
	// same moment learn of each other from the coordinator at the next one.
	c.CreateOffice("bench", map[string]any{"checkin_interval": "5s"})
	r, relayReg := startRelay(b, c, c.EnrollToken("bench", "relay", 1), func(cfg *relay.Config) {
		cfg.EgressBytesPerSec = int64(egress) * 1_000_000
		cfg.DataDir = memDir(b)
	})
	c.MustDo("PATCH", "/v1/offices/bench", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(b, c, "bench", r.Addr())
	token := c.EnrollToken("bench", "agent", n)
	agents := startAgentsAtOnce(n, func(i int) *testAgent {
		return startAgentWith(b, c, token, fmt.Sprintf("bench-%02d", i), fmt.Sprintf("127.0.2.%d", 10+i), memDir(b), func(cfg *agent.Config) {
			if os.Getenv("OUTPOST_BENCH_PEER_OFF") != "" {
				cfg.PeerListen = "off" // for comparison: everything from the relay
			}
		})
	})
	// Each agent has seen the whole office once. On a loaded machine
	// memberlist's loopback timers make members flap, so not necessarily
	// all at the same moment.
	seen := make([]bool, n)
	tu.Eventually(b, 5*time.Minute, func() bool {
		all := true
		for i, a := range agents {
			seen[i] = seen[i] || len(a.a.GossipPeers()) >= n-1
			all = all && seen[i]
		}
		return all
	}, "the office's gossip did not form: peers seen %v", peerCounts(agents))
	c.MustDo("PATCH", "/v1/offices/bench", map[string]any{"checkin_interval": "1h"}, nil)
	for iter := range b.N {
		pkg := dataPackage(b, sizeMiB<<20)
		size := float64(len(pkg))
		sha := c.Upload(fmt.Sprintf("big-%d.tar.gz", iter), pkg)
		servedBefore := counterBy(b, relayReg, "outpost_relay_served_bytes_total", "source", "")
		peerBefore := 0.0
		gotBefore := make([]float64, n)
		for i, a := range agents {
			peerBefore += counterBy(b, a.reg, "outpost_agent_fetched_bytes_total", "source", "peer")
			gotBefore[i] = counterBy(b, a.reg, "outpost_agent_fetched_bytes_total", "source", "")
		}
		b.ResetTimer()
		start := time.Now()
		c.Apply("bench", fmt.Sprintf("items:\n  - kind: package\n    name: big%d\n    version: \"1\"\n    artifact: %s\n", iter, sha))
		done := make([]time.Duration, n)
		got := make([]time.Duration, n) // when the agent had fetched the whole package
		tu.Eventually(b, 10*time.Minute, func() bool {
			all := true
			for i, a := range agents {
				if got[i] == 0 && counterBy(b, a.reg, "outpost_agent_fetched_bytes_total", "source", "")-gotBefore[i] >= size {
					got[i] = time.Since(start)
				}
				if done[i] == 0 && exists(filepath.Join(a.path(fmt.Sprintf("opt/big%d/data.bin", iter)))) {
					done[i] = time.Since(start)
				}
				all = all && done[i] > 0
			}
			return all
		}, "not every agent installed the package")
		b.StopTimer()
		served := counterBy(b, relayReg, "outpost_relay_served_bytes_total", "source", "") - servedBefore
		peer := -peerBefore
		for _, a := range agents {
			peer += counterBy(b, a.reg, "outpost_agent_fetched_bytes_total", "source", "peer")
		}
		sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		b.ReportMetric(got[n/2].Seconds(), "s-p50-fetched")
		b.ReportMetric(got[n-1].Seconds(), "s-all-fetched")
		b.ReportMetric(served/size, "relay-egress-x")
		b.ReportMetric(peer/size, "peer-bytes-x")
		b.ReportMetric(done[n/2].Seconds(), "s-p50-installed")
		b.ReportMetric(done[n-1].Seconds(), "s-all-installed")
		fmt.Printf("peer sharing: %d agents, %d MiB, relay egress cap %d MB/s: relay sent %.2f× the package, peers %.2f×; "+
			"fetched p50 %.1f s, all %.1f s; installed p50 %.1f s, all %.1f s (the relay alone at its cap: %.1f s)\n",
			n, sizeMiB, egress, served/size, peer/size, got[n/2].Seconds(), got[n-1].Seconds(), done[n/2].Seconds(), done[n-1].Seconds(), float64(n)*size/float64(egress)/1e6)
		// What the coordinator shows for it (outpost artifact show), once
		// every agent's figures are in.
		var view struct {
			Fetched struct {
				Total map[string]any `json:"total"`
			} `json:"fetched"`
		}
		tu.Eventually(b, time.Minute, func() bool {
			c.MustDo("GET", "/v1/artifacts/"+sha, nil, &view)
			agents, _ := view.Fetched.Total["agents"].(float64)
			return int(agents) == n
		}, "the coordinator did not get every agent's figures")
		fmt.Printf("peer sharing: the coordinator's figures for the artifact: %v\n", view.Fetched.Total)
		if served > 2*size && os.Getenv("OUTPOST_BENCH_PEER_OFF") == "" {
			b.Errorf("relay sent %.2f× the package, want at most 2×", served/size)
		}
	}
}
