package e2e

import (
	"fmt"
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

// officeOfThree is a coordinator whose gossip key phases last 2 s and an
// office of three agents (gossip on 127.0.0.<first>, +1, +2) that have
// found each other, checking in every 5 s; done tells whether the
// office's key rotation is over.
func officeOfThree(t *testing.T, office string, first int) (c *coordinatortest.Harness, a, b, third *testAgent, done func() bool) {
	c = coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.GossipKeyPhase = 2 * time.Second }))
	c.CreateOffice(office, map[string]any{"checkin_interval": "5s"})
	token := c.EnrollToken(office, "agent", 3)
	a = startAgent(t, c, token, office+"-a", fmt.Sprintf("127.0.0.%d", first))
	b = startAgent(t, c, token, office+"-b", fmt.Sprintf("127.0.0.%d", first+1))
	third = startAgent(t, c, token, office+"-c", fmt.Sprintf("127.0.0.%d", first+2))
	tu.Eventually(t, 30*time.Second, func() bool { return sees(a, b.a.ID(), third.a.ID()) && sees(third, a.a.ID(), b.a.ID()) }, "office gossip did not form")
	done = func() bool {
		var o struct {
			Rotation string `json:"rotation"`
		}
		c.MustDo("GET", "/v1/offices/"+office, nil, &o)
		return o.Rotation == ""
	}
	return c, a, b, third, done
}

func TestGossipKeyRotationAndRemovedMemberIsCutOff(t *testing.T) {
	c, a, b, off, rotationDone := officeOfThree(t, "hall", 81)

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
	c, a, b, r, rotationDone := officeOfThree(t, "yard", 91)
	c.MustDo("POST", "/v1/offices/yard/gossip-key/rotate", nil, nil)
	tu.Eventually(t, 60*time.Second, rotationDone, "the rotation did not finish")
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
