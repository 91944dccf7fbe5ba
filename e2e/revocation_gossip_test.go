package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// TestRevocationReachesACutOffHostByGossip: a host the coordinator cannot
// reach learns that a technician was disabled from its office peers, and
// refuses the technician's still-unexpired token on a direct session.
func TestRevocationReachesACutOffHostByGossip(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("annex", map[string]any{"checkin_interval": "1h"})
	token := c.EnrollToken("annex", "agent", 2)
	listen := freeUDPOn(t, "127.0.0.91")
	online := startAgent(t, c, token, "annex-online", "127.0.0.90")
	cutoff := startAgent(t, c, token, "annex-cutoff", "127.0.0.91", agent.WithSessionListen(listen, ""))
	tina := newTechnician(t, c, "tina")
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs", "members": []string{"tina"}}, nil)
	rev := setOfficePerms(t, c, "annex", map[string]any{"subject": "group:techs", "rights": []string{"command"}})
	waitRevision(t, online, rev)
	waitRevision(t, cutoff, rev)

	tina.login()
	tina.env = []string{"OUTPOST_DIRECT=" + listen}
	if r := tina.run("", "exec", cutoff.a.ID(), "--", "/bin/echo", "before"); r.code != 0 || r.stdout != "before\n" {
		t.Fatalf("direct session before the revocation: %v", r)
	}

	// The host loses the coordinator (a dead address after a restart) but
	// keeps its office.
	cutoff.stop()
	cutoff.cfg.Coordinator = "127.0.0.1:9" // nothing listens there
	cutoff.start()
	tu.Eventually(t, 30*time.Second, func() bool { return len(online.a.GossipPeers()) == 1 && len(cutoff.a.GossipPeers()) == 1 },
		"the cut-off host did not rejoin its office")

	// Disabling tina reaches the online host by push, and the cut-off one
	// only through the office.
	c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
	tu.Eventually(t, 30*time.Second, func() bool {
		r := tina.run("", "exec", cutoff.a.ID(), "--", "/bin/echo", "after")
		return r.code != 0 && strings.Contains(r.stderr, "revoked")
	}, "the cut-off host still lets a disabled technician in")
}
