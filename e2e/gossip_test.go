package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A policy with nothing to download, so that only policy has to travel.
const removeHello = "items:\n  - kind: package\n    name: hello\n    state: absent\n"

func TestRevisionSpreadsByGossipToMembersCutOffFromTheCoordinator(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.PushFanout = 1 }))
	c.CreateOffice("depot", map[string]any{"checkin_interval": "1h"})
	token := c.EnrollToken("depot", "agent", 4)
	var agents []*testAgent
	for i := range 4 {
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("depot-%d", i), fmt.Sprintf("127.0.0.%d", 40+i)))
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, a := range agents {
			if len(a.a.GossipPeers()) != 3 {
				return false
			}
		}
		return true
	}, "the office's gossip did not form")

	tu.Eventually(t, 10*time.Second, func() bool {
		for _, a := range agents {
			b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "state", "peers.json"))
			if err != nil || strings.Count(string(b), ":") != 3 {
				return false
			}
		}
		return true
	}, "members did not write down their peers")

	// Three of the four lose the coordinator (a dead address after a
	// restart); they find each other again from the peers they knew.
	for _, a := range agents[1:] {
		a.stop()
		a.cfg.Coordinator = "127.0.0.1:9" // nothing listens there
		a.start()
	}
	tu.Eventually(t, 30*time.Second, func() bool { return len(agents[0].a.GossipPeers()) == 3 }, "the cut-off members did not rejoin")

	rev := c.Apply("depot", removeHello)
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, a := range agents {
			if a.a.Revision() != rev {
				return false
			}
		}
		return true
	}, "revision %d did not reach every member by gossip", rev)

	// A member of the office (it has the office key) that hands out a
	// forged newer policy: refused everywhere, and reported.
	id, err := member.LoadIdentity(filepath.Join(agents[1].cfg.DataDir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(nil)
	forged, err := wire.SignPolicy(forger, &wire.Policy{Office: "depot", Revision: rev + 5})
	if err != nil {
		t.Fatal(err)
	}
	evil := startEvilPeer(t, id.GossipKey, forged, agents[0].a.GossipPeers()[0].Addr)
	tellRevision(t, evil, "evil", "depot", rev+5)
	tu.Eventually(t, 30*time.Second, func() bool { return c.Metric("outpost_coordinator_peer_reports_total") >= 1 },
		"no member reported the forging peer to the coordinator")
	// The same forgery riding in the rumor itself (small policies do).
	reports := c.Metric("outpost_coordinator_peer_reports_total")
	forged2, err := wire.SignPolicy(forger, &wire.Policy{Office: "depot", Revision: rev + 6})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(&wire.PeerMessage{From: "evil", Body: &wire.PeerMessage_RevisionRumor{
		RevisionRumor: &wire.RevisionRumor{Office: "depot", Revision: rev + 6, Policy: forged2, HolderAddr: evil.Addr()}}})
	if err := evil.Rumor("revision", b); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 30*time.Second, func() bool { return c.Metric("outpost_coordinator_peer_reports_total") > reports },
		"no member reported the forged policy in a rumor to the coordinator")
	for _, a := range agents {
		if a.a.Revision() != rev {
			t.Fatalf("%s accepted a forged policy: revision %d", a.cfg.Hostname, a.a.Revision())
		}
	}
}

// evilPeer answers every policy request with the same signed policy.
type evilPeer struct {
	node *gossip.Node
	sp   *wire.SignedPolicy
}

func (e *evilPeer) PeerChanged(gossip.Peer) {}
func (e *evilPeer) Message(b []byte) {
	var m wire.PeerMessage
	if proto.Unmarshal(b, &m) != nil || m.GetPolicyRequest() == nil {
		return
	}
	resp, _ := proto.Marshal(&wire.PeerMessage{From: "evil", Body: &wire.PeerMessage_Policy{Policy: e.sp}})
	go e.node.Send(m.GetFrom(), resp)
}

// tellRevision has node n tell its office by a rumor that it holds
// revision rev, without the policy: members that want it ask n.
func tellRevision(t *testing.T, n *gossip.Node, name, office string, rev uint64) {
	t.Helper()
	b, err := proto.Marshal(&wire.PeerMessage{From: name, Body: &wire.PeerMessage_RevisionRumor{
		RevisionRumor: &wire.RevisionRumor{Office: office, Revision: rev, HolderAddr: n.Addr()}}})
	if err == nil {
		err = n.Rumor("revision", b)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func startEvilPeer(t *testing.T, key []byte, sp *wire.SignedPolicy, seed string) *gossip.Node {
	t.Helper()
	e := &evilPeer{sp: sp}
	n, err := gossip.New(gossip.Config{Name: "evil", Bind: "127.0.0.60:0", Keys: [][]byte{key}, Role: "agent", Handler: e}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	e.node = n
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	if _, err := n.Join([]string{seed}); err != nil {
		t.Fatal(err)
	}
	return n
}
