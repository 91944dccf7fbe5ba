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
	"github.com/outposthq/outpost/pkg/tlsutil"
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
	evil := startEvilPeer(t, id, forged, agents[0].a.GossipPeers()[0].Addr)
	tellRevision(t, evil, "evil", "depot", rev+5)
	tu.Eventually(t, 30*time.Second, func() bool { return c.Metric("outpost_coordinator_peer_reports_total") >= 1 },
		"no member reported the forging peer to the coordinator")
	// The same forgery riding in the rumor itself (small policies do),
	// told under another name: a member reports the same misdeed of the
	// same sender once an interval, and every member may have reported
	// "evil" already.
	reports := c.Metric("outpost_coordinator_peer_reports_total")
	forged2, err := wire.SignPolicy(forger, &wire.Policy{Office: "depot", Revision: rev + 6})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(&wire.PeerMessage{From: "evil-rumor", Body: &wire.PeerMessage_RevisionRumor{
		RevisionRumor: &wire.RevisionRumor{Office: "depot", Revision: rev + 6, Policy: forged2, HolderAddr: evil.Addr()}}})
	if err := evil.Rumor("revision", b); err != nil {
		t.Fatal(err)
	}
	// Reports travel with check-ins, at the office's interval (an hour
	// here): a forged message does not make members check in. A new
	// revision does (the connected member runs it and reports at once,
	// with the others' check-ins it carries).
	time.Sleep(2 * time.Second)
	c.Apply("depot", "items: []\n")
	tu.Eventually(t, 30*time.Second, func() bool { return c.Metric("outpost_coordinator_peer_reports_total") > reports },
		"no member reported the forged policy in a rumor to the coordinator")
	for _, a := range agents {
		if r := a.a.Revision(); r >= rev+5 {
			t.Fatalf("%s accepted a forged policy: revision %d", a.cfg.Hostname, r)
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

// startEvilPeer runs a gossip node that holds the office key of id (a
// member's, stolen) but no pass, and answers policy requests with sp.
func startEvilPeer(t *testing.T, id *member.Identity, sp *wire.SignedPolicy, seed string) *gossip.Node {
	t.Helper()
	e := &evilPeer{sp: sp}
	n, err := gossip.New(keyHolder("evil", "127.0.0.60:0", id, e), logging.Discard())
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

// keyHolder is the gossip of someone who holds the office key of id (a
// member's, stolen) but has no pass: members do not list it, and it
// hears and says what any holder of the key can.
func keyHolder(name, bind string, id *member.Identity, h gossip.Handler) gossip.Config {
	_, signer, _ := ed25519.GenerateKey(nil)
	return gossip.Config{Name: name, Bind: bind, Keys: [][]byte{id.GossipKey}, PassKey: id.PolicyKey, Signer: signer, Handler: h}
}

// Members list only members that announce a pass the coordinator signed
// (pkg/gossip). Enrolment brings one; a member enrolled before passes (no
// gossip key, no pass on its disk) makes a gossip key, asks for a pass at
// its next check-in, and is listed again once it announces it.
func TestMemberWithoutAPassIsListedAfterItChecksIn(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("annex", nil)
	token := c.EnrollToken("annex", "agent", 2)
	a := startAgent(t, c, token, "annex-0", "127.0.0.96")
	b := startAgent(t, c, token, "annex-1", "127.0.0.97")
	listed := func() bool {
		for _, p := range a.a.GossipPeers() {
			if p.Name == b.a.ID() && p.Meta.Role == "agent" {
				return true
			}
		}
		return false
	}
	tu.Eventually(t, 30*time.Second, listed, "annex-1 is not listed by annex-0")
	dir := filepath.Join(b.cfg.DataDir, "identity")
	old, err := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatalf("enrolment left no gossip key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "member.pass")); err != nil {
		t.Fatalf("enrolment left no pass: %v", err)
	}

	b.stop()
	tu.Eventually(t, 30*time.Second, func() bool { return !listed() }, "annex-1 stopped but is still listed")
	for _, f := range []string{"gossip.key", "member.pass"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	passes := c.Metric("outpost_coordinator_member_passes_issued_total")
	b.start()
	tu.Eventually(t, 30*time.Second, listed, "annex-1, back without a pass, is not listed after its check-in")
	if got := c.Metric("outpost_coordinator_member_passes_issued_total"); got != passes+1 {
		t.Errorf("passes issued went from %v to %v, want one more", passes, got)
	}
	now, err := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if err != nil || string(now) == string(old) {
		t.Fatalf("no new gossip key: %v", err)
	}
}

// rogueMember enrols a member of office that has gone bad: its pass and
// the office key are genuine. It is its gossip configuration.
func rogueMember(t *testing.T, c *coordinatortest.Harness, office, bind string, h gossip.Handler) gossip.Config {
	t.Helper()
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, _, err := member.Enroll(ctx, c.QUIC, c.CA, c.EnrollToken(office, "agent", 1), "rogue", wire.Role_ROLE_AGENT, key)
	if err != nil {
		t.Fatal(err)
	}
	return gossip.Config{Name: id.ID, Bind: bind, Keys: [][]byte{id.GossipKey}, PassKey: id.PolicyKey,
		Signer: id.GossipSigner, Pass: id.Pass(), Handler: h}
}
