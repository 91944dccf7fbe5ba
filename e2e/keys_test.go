package e2e

import (
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

func sees(a *testAgent, names ...string) bool {
	peers := map[string]bool{}
	for _, p := range a.a.GossipPeers() {
		peers[p.Name] = true
	}
	for _, n := range names {
		if !peers[n] {
			return false
		}
	}
	return len(peers) == len(names)
}

func TestGossipKeyRotationAndRemovedMemberIsCutOff(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.GossipKeyPhase = 2 * time.Second }))
	c.CreateOffice("hall", map[string]any{"checkin_interval": "5s"})
	token := c.EnrollToken("hall", "agent", 3)
	a := startAgent(t, c, token, "hall-a", "127.0.0.81")
	b := startAgent(t, c, token, "hall-b", "127.0.0.82")
	off := startAgent(t, c, token, "hall-c", "127.0.0.83")
	tu.Eventually(t, 30*time.Second, func() bool { return sees(a, b.a.ID(), off.a.ID()) && sees(b, a.a.ID(), off.a.ID()) }, "office gossip did not form")
	rotationDone := func() bool {
		var o struct {
			Rotation string `json:"rotation"`
		}
		c.MustDo("GET", "/v1/offices/hall", nil, &o)
		return o.Rotation == ""
	}

	// One member is away for the whole rotation; the others never split.
	off.stop()
	c.MustDo("POST", "/v1/offices/hall/gossip-key/rotate", nil, nil)
	tu.Eventually(t, 60*time.Second, rotationDone, "the rotation did not finish")
	tu.Eventually(t, 30*time.Second, func() bool { return sees(a, b.a.ID()) && sees(b, a.a.ID()) }, "a and b lost each other during the rotation")
	// The member that missed it comes back with the old key only, and
	// rejoins with the keys its check-in brings.
	off.start()
	tu.Eventually(t, 60*time.Second, func() bool { return sees(off, a.a.ID(), b.a.ID()) && sees(a, b.a.ID(), off.a.ID()) },
		"the member that missed the rotation did not rejoin: %v", off.a.GossipPeers())

	// An admin removes b: its connection is refused and, once the key has
	// turned over, the office no longer hears it.
	if code, msg := c.Do("DELETE", "/v1/agents/"+b.a.ID(), nil, nil); code != 204 {
		t.Fatalf("remove b: %d %s", code, msg)
	}
	tu.Eventually(t, 60*time.Second, rotationDone, "the rotation after the removal did not finish")
	tu.Eventually(t, 60*time.Second, func() bool { return sees(a, off.a.ID()) && sees(off, a.a.ID()) },
		"the removed member is still in the office's gossip: %v", a.a.GossipPeers())
	if code, _ := c.Do("GET", "/v1/agents/"+b.a.ID(), nil, nil); code != 404 {
		t.Fatalf("removed member still listed: %d", code)
	}
}

// A member that restarts while the coordinator is away is still a member
// of its office: it rejoins with the gossip keys the coordinator gave it
// last, not the one it enrolled with (rotated since), and the office's
// revision still reaches it from its peers.
func TestMemberRestartedWhileCutOffRejoinsWithTheCurrentKeys(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.GossipKeyPhase = 2 * time.Second }))
	c.CreateOffice("yard", map[string]any{"checkin_interval": "5s"})
	token := c.EnrollToken("yard", "agent", 3)
	a := startAgent(t, c, token, "yard-a", "127.0.0.91")
	b := startAgent(t, c, token, "yard-b", "127.0.0.92")
	r := startAgent(t, c, token, "yard-c", "127.0.0.93")
	tu.Eventually(t, 30*time.Second, func() bool { return sees(a, b.a.ID(), r.a.ID()) && sees(r, a.a.ID(), b.a.ID()) }, "office gossip did not form")
	c.MustDo("POST", "/v1/offices/yard/gossip-key/rotate", nil, nil)
	tu.Eventually(t, 60*time.Second, func() bool {
		var o struct {
			Rotation string `json:"rotation"`
		}
		c.MustDo("GET", "/v1/offices/yard", nil, &o)
		return o.Rotation == ""
	}, "the rotation did not finish")
	// Every member has checked in with the new key alone by now; one more
	// interval so that r surely has.
	time.Sleep(6 * time.Second)
	tu.Eventually(t, 30*time.Second, func() bool { return sees(a, b.a.ID(), r.a.ID()) && sees(r, a.a.ID(), b.a.ID()) }, "the office split during the rotation")

	// The coordinator goes away and r restarts: it must find a and b with
	// what it kept, the enrolment key being retired.
	c.Stop()
	r.stop()
	r.start()
	tu.Eventually(t, 60*time.Second, func() bool { return sees(r, a.a.ID(), b.a.ID()) && sees(a, b.a.ID(), r.a.ID()) },
		"the member restarted while cut off did not rejoin its office: %v", r.a.GossipPeers())
}
