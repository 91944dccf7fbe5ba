package e2e

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

func TestPartitionedOfficeHealsAndConvergesOnTheNewestRevision(t *testing.T) {
	c := coordinatortest.New(t)
	// A long interval: only pushes and gossip move policy in this test.
	c.CreateOffice("split", map[string]any{"checkin_interval": "1h"})
	token := c.EnrollToken("split", "agent", 4)
	// Two halves, .140-.141 and .142-.143; while cut, each hears only its own.
	var cut atomic.Bool
	half := func(host string) int {
		if !strings.HasPrefix(host, "127.0.0.14") {
			return -1
		}
		if host >= "127.0.0.142" {
			return 1
		}
		return 0
	}
	var agents []*testAgent
	for i := range 4 {
		ip := fmt.Sprintf("127.0.0.%d", 140+i)
		allow := agent.WithGossipAllow(func(host string) bool {
			return !cut.Load() || half(host) == -1 || half(host) == half(ip)
		})
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("split-%d", i), ip, allow))
	}
	a, b := agents[:2], agents[2:]
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, x := range agents {
			if len(x.a.GossipPeers()) != 3 {
				return false
			}
		}
		return true
	}, "the office's gossip did not form")
	rev0 := c.Apply("split", "items: []\n")
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, x := range agents {
			if x.a.Revision() != rev0 {
				return false
			}
		}
		return true
	}, "revision %d did not reach the office", rev0)

	// The switch between the halves fails.
	cut.Store(true)
	tu.Eventually(t, 60*time.Second, func() bool {
		return sees(a[0], a[1].a.ID()) && sees(a[1], a[0].a.ID()) && sees(b[0], b[1].a.ID()) && sees(b[1], b[0].a.ID())
	}, "the halves did not see each other gone")
	// The second half also loses the coordinator (a dead address after a
	// restart), so a new revision can reach the first half only.
	for _, x := range b {
		x.stop()
		x.cfg.Coordinator = "127.0.0.1:9" // nothing listens there
		x.start()
	}
	tu.Eventually(t, 30*time.Second, func() bool { return sees(b[0], b[1].a.ID()) && sees(b[1], b[0].a.ID()) }, "the second half did not find itself again")
	rev := c.Apply("split", removeHello)
	tu.Eventually(t, 30*time.Second, func() bool { return a[0].a.Revision() == rev && a[1].a.Revision() == rev },
		"revision %d did not reach the half that reaches the coordinator", rev)
	// A few gossip rounds: the other half must still not have it.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, x := range b {
			if x.a.Revision() >= rev {
				t.Fatalf("%s took revision %d across the partition", x.cfg.Hostname, rev)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The switch is mended: the halves find each other again (members
	// retry peers that died) and converge on the newest revision.
	healed := time.Now()
	cut.Store(false)
	tu.Eventually(t, 60*time.Second, func() bool {
		for _, x := range agents {
			if x.a.Revision() != rev || len(x.a.GossipPeers()) != 3 {
				return false
			}
		}
		return true
	}, "the office did not heal and converge on revision %d", rev)
	t.Logf("healed and converged %v after the partition ended", time.Since(healed).Round(time.Millisecond))
}
