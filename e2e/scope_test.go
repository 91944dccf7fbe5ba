package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

func pkgItem(name, version, sha, prefix string) string {
	s := fmt.Sprintf("  - kind: package\n    name: %s\n    version: %q\n    artifact: %s\n", name, version, sha)
	if prefix != "" {
		s += "    prefix: " + prefix + "\n"
	}
	return s
}

// Two agents of one office: desk-1 is labelled kiosk and named by an
// agent policy, desk-2 only has the office's policy. Each installs exactly
// its effective items; desk-1's own signed policy, handed to desk-2 by an
// office peer, is refused.
func TestEndpointScope(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(tu.RepoRoot(t), "testdata/packages", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 := c.Upload("hello-1.0.0.tar.gz", read("hello-1.0.0.tar.gz"))
	v2 := c.Upload("hello-2.0.0.tar.gz", read("hello-2.0.0.tar.gz"))

	// The office's own policy, and a policy for a computer that has not
	// enrolled yet, by hostname.
	c.Apply("hq", "items:\n"+pkgItem("hello", "1.0.0", v1, ""))
	c.MustDo("PUT", "/v1/policies/desk-1-upgrade", "targets: {agents: [desk-1]}\nitems:\n"+pkgItem("hello", "2.0.0", v2, ""), nil)

	token := c.EnrollToken("hq", "agent", 2)
	desk1 := startAgent(t, c, token, "desk-1", "127.0.0.70")
	desk2 := startAgent(t, c, token, "desk-2", "127.0.0.71")
	tu.Eventually(t, 30*time.Second, func() bool {
		return len(desk1.a.GossipPeers()) == 1 && len(desk2.a.GossipPeers()) == 1
	}, "the office's gossip did not form")

	// A label, and a policy for it.
	c.MustDo("PATCH", "/v1/agents/"+desk1.a.ID()+"/labels", map[string]any{"set": map[string]string{"kiosk": ""}}, nil)
	var applied struct{ Published map[string]uint64 }
	c.MustDo("PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\nitems:\n"+pkgItem("hello-kiosk", "1.0.0", v1, "/opt/kiosk"), &applied)
	rev := applied.Published["hq"]
	if rev == 0 {
		t.Fatalf("hq was not republished: %v", applied)
	}

	// Conflicts are refused at once, naming both policies and the computer.
	code, msg := c.Do("PUT", "/v1/policies/kiosks-old", "targets: {labels: [kiosk]}\nitems:\n"+pkgItem("hello-kiosk", "0.9", v1, "/opt/kiosk"), nil)
	if code != 409 || !strings.Contains(msg, `"kiosks" and "kiosks-old"`) || !strings.Contains(msg, "desk-1") {
		t.Fatalf("conflicting policy: %d %q", code, msg)
	}

	at := func(ta *testAgent, rev uint64) func() bool {
		return func() bool {
			for _, a := range c.Agents("hq") {
				if a.ID == ta.a.ID() {
					return a.Revision == rev && a.Compliant && ta.a.Revision() == rev
				}
			}
			return false
		}
	}
	tu.Eventually(t, 60*time.Second, at(desk1, rev), "desk-1 did not apply revision %d", rev)
	tu.Eventually(t, 60*time.Second, at(desk2, rev), "desk-2 did not apply revision %d", rev)

	// desk-1: hello 2.0.0 from its agent policy, and the kiosk package.
	// desk-2: hello 1.0.0 from the office, nothing else.
	for _, f := range []struct {
		a    *testAgent
		path string
		want bool
	}{
		{desk1, "opt/hello/share/doc/hello/NEWS", true},  // 2.0.0
		{desk1, "opt/hello/share/hello/greeting", false}, // 1.0.0
		{desk1, "opt/kiosk/bin/hello", true},             // the label's package
		{desk2, "opt/hello/share/hello/greeting", true},  // 1.0.0
		{desk2, "opt/hello/share/doc/hello/NEWS", false}, // not 2.0.0
		{desk2, "opt/kiosk/bin/hello", false},            // not labelled
	} {
		if exists(f.a.path(f.path)) != f.want {
			t.Errorf("%s: %s exists: %v, want %v", f.a.cfg.Hostname, f.path, !f.want, f.want)
		}
	}
	// What each runs is what the coordinator says it should.
	var eff struct {
		Variant bool
		Items   []struct{ ID, Policy, Level string }
	}
	c.MustDo("GET", "/v1/agents/"+desk1.a.ID()+"/policy", nil, &eff)
	if !eff.Variant || len(eff.Items) != 2 || eff.Items[0].ID != "package/hello" || eff.Items[0].Policy != "desk-1-upgrade" || eff.Items[1].Policy != "kiosks" {
		t.Fatalf("desk-1's effective policy: %+v", eff)
	}
	if p := desk1.a.Revision(); p != rev {
		t.Fatalf("desk-1 at %d", p)
	}

	// desk-2 is cut off from the coordinator; the office moves on.
	desk2.stop()
	desk2.cfg.Coordinator = "127.0.0.1:9"
	desk2.start()
	c.MustDo("PUT", "/v1/policies/desk-1-upgrade", "targets: {agents: [desk-1]}\nitems:\n"+pkgItem("hello", "2.0.0", v2, "")+pkgItem("hello-extra", "1.0.0", v1, "/opt/extra"), &applied)
	next := applied.Published["hq"]
	tu.Eventually(t, 60*time.Second, at(desk1, next), "desk-1 did not apply revision %d", next)

	// desk-1's own policy, validly signed by the coordinator, handed to
	// desk-2 by a member of the office (one gone bad: its pass and office
	// key are genuine): refused.
	b, err := os.ReadFile(filepath.Join(desk1.cfg.DataDir, "state", "policy.pb"))
	if err != nil {
		t.Fatal(err)
	}
	var own wire.SignedPolicy
	if err := proto.Unmarshal(b, &own); err != nil {
		t.Fatal(err)
	}
	id, err := member.LoadIdentity(filepath.Join(desk2.cfg.DataDir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := wire.VerifyPolicy(id.PolicyKey, &own); err != nil || p.GetAgent() != desk1.a.ID() || p.GetRevision() != next {
		t.Fatalf("desk-1's policy: %v %v", p, err)
	}
	peer := &countingPeer{sp: &own}
	rogue := rogueMember(t, c, "hq", "127.0.0.72:0", peer)
	n, err := gossip.New(rogue, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	peer.node = n
	tu.Eventually(t, 30*time.Second, func() bool { return len(desk2.a.GossipPeers()) == 1 }, "desk-2 did not rejoin the office")
	startNode(t, n, desk2.a.GossipPeers()[0].Addr)
	tellRevision(t, n, rogue.Name, "hq", next)
	tu.Eventually(t, 30*time.Second, func() bool { return peer.served.Load() >= 2 }, "desk-2 never asked the peer for revision %d", next)
	if got := desk2.a.Revision(); got != rev {
		t.Fatalf("desk-2 took another agent's policy: revision %d", got)
	}
	if exists(desk2.path("opt/extra/bin/hello")) {
		t.Fatal("desk-2 installed desk-1's items")
	}

	// Back with the coordinator, desk-2 takes the office's revision, which
	// is still only the office's items.
	desk2.stop()
	desk2.cfg.Coordinator = c.QUIC
	desk2.start()
	tu.Eventually(t, 60*time.Second, at(desk2, next), "desk-2 did not apply revision %d", next)
	if exists(desk2.path("opt/extra/bin/hello")) || exists(desk2.path("opt/kiosk/bin/hello")) || !exists(desk2.path("opt/hello/share/hello/greeting")) {
		t.Fatal("desk-2 does not run exactly the office's policy")
	}
	if !exists(desk1.path("opt/extra/bin/hello")) {
		t.Fatal("desk-1 did not install its new item")
	}
}

// countingPeer answers every policy request with one signed policy.
type countingPeer struct {
	node   *gossip.Node
	sp     *wire.SignedPolicy
	served atomic.Int32
}

func (e *countingPeer) PeerChanged(gossip.Peer) {}
func (e *countingPeer) Message(b []byte) {
	var m wire.PeerMessage
	if proto.Unmarshal(b, &m) != nil || m.GetPolicyRequest() == nil {
		return
	}
	resp, _ := proto.Marshal(&wire.PeerMessage{From: e.node.Name(), Body: &wire.PeerMessage_Policy{Policy: e.sp}})
	e.served.Add(1)
	go e.node.Send(m.GetFrom(), resp)
}

// startNode runs a gossip node until the test ends and joins it to seed.
func startNode(t *testing.T, n *gossip.Node, seed string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	if _, err := n.Join([]string{seed}); err != nil {
		t.Fatal(err)
	}
}
