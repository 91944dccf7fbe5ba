package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// gossipOffice is a member ag-1 of office wing holding revision 5, in a
// real gossip node on loopback with its peer-message handler, and an
// intruder: a second gossip node that holds the office key (any member, a
// stolen laptop) and says what it likes.
type gossipOffice struct {
	a        *Agent
	priv     ed25519.PrivateKey // the coordinator's policy key
	intruder *gossip.Node
	key      []byte // the office key
}

func newGossipOffice(t *testing.T, ip string) *gossipOffice {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	st, err := state.Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := wire.SignPolicy(priv, &wire.Policy{Office: "wing", Revision: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accept(sp, "wing", "ag-1"); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{DataDir: t.TempDir()}, id: &member.Identity{ID: "ag-1", PolicyKey: pub}, state: st, log: logging.Discard(), office: "wing",
		info: &wire.OfficeInfo{Name: "wing"}, kick: make(chan struct{}, 1)}
	if a.peers, err = newPeerPolicy(a, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	if a.rollup, err = newRollup(a, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	ctx, cancel := context.WithCancel(context.Background())
	signer, pass := testutil.MemberPass(priv, "ag-1", wire.Role_ROLE_AGENT)
	a.gossip = &officeGossip{base: gossip.Config{Name: "ag-1", Bind: ip + ":0", PassKey: pub, Signer: signer, Handler: a.peers}, pass: pass, parent: ctx, log: logging.Discard()}
	if err := a.gossip.set([][]byte{key}); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.gossip.stop(); cancel() })
	o := &gossipOffice{a: a, priv: priv, key: key}
	o.intruder = o.join(t, "ag-evil", nextIP(ip), nil)
	return o
}

// join runs a member named name at ip in the office (holding its key and
// a pass: a member gone bad) with handler h, joined to ag-1.
func (o *gossipOffice) join(t *testing.T, name, ip string, h gossip.Handler) *gossip.Node {
	t.Helper()
	signer, pass := testutil.MemberPass(o.priv, name, wire.Role_ROLE_AGENT)
	n, err := gossip.New(gossip.Config{Name: name, Bind: ip + ":0", Keys: [][]byte{o.key}, PassKey: o.priv.Public().(ed25519.PublicKey),
		Signer: signer, Pass: pass, Handler: h}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	if _, err := n.Join([]string{o.a.gossip.addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return o.a.gossip.lists(name) }, "%s joined ag-1", name)
	return n
}

// nextIP is the loopback address after ip (127.0.0.x).
func nextIP(ip string) string {
	i := strings.LastIndexByte(ip, '.')
	var last int
	fmt.Sscanf(ip[i+1:], "%d", &last)
	return fmt.Sprintf("%s.%d", ip[:i], last+1)
}

// send has the intruder hand m to ag-1 over the office's encrypted stream.
func (o *gossipOffice) send(t *testing.T, m *wire.PeerMessage) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.intruder.Send("ag-1", b); err != nil {
		t.Fatal(err)
	}
}

// Every name and address a peer message carries is the sender's word, and
// a message may be up to gossip.MaxMessage (8 MiB). A policy request's
// From and ReplyTo are kept as hints (up to 4096 of them before they are
// cleared): kept whatever their size, one holder of the office key would
// make every member of the office keep gigabytes. A member id is a few
// dozen bytes and a gossip address at most a few dozen more; a message
// whose sender is not named like a member is dropped, and an address
// that is not one is not kept.
func TestPeerHintsKeepNoMoreThanAMemberIDAndAnAddressOfTheSendersWord(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.71")
	const msgs, size = 16, 256 << 10
	for i := range msgs {
		big := strings.Repeat(string(rune('a'+i)), size)
		o.send(t, &wire.PeerMessage{From: big, Body: &wire.PeerMessage_PolicyRequest{PolicyRequest: &wire.PeerPolicyRequest{
			Office: "wing", HaveRevision: 6, ReplyTo: "127.0.0.1:1" + big}}})
	}
	// A sender with a member's name and an address that is not one: the
	// name is kept, the address not.
	o.send(t, &wire.PeerMessage{From: "ag-2", Body: &wire.PeerMessage_PolicyRequest{PolicyRequest: &wire.PeerPolicyRequest{
		Office: "wing", HaveRevision: 6, ReplyTo: "127.0.0.1:1" + strings.Repeat("9", size)}}})
	kept := func() (n, bytes int) {
		o.a.peers.mu.Lock()
		defer o.a.peers.mu.Unlock()
		for k, h := range o.a.peers.known {
			n, bytes = n+1, bytes+len(k)+len(h.addr)
		}
		return n, bytes
	}
	// Each on a stream of its own, handled in any order: wait for all of
	// them, or give up after a while (a fixed member keeps only ag-2).
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := kept(); n < msgs+1 && time.Now().Before(deadline); n, _ = kept() {
		time.Sleep(20 * time.Millisecond)
	}
	if n, b := kept(); n != 1 || b > msgs*256 {
		t.Fatalf("ag-1 keeps %d hints of %d bytes (%d KiB) from one peer's %d messages: a peer's name and address are kept whatever their size "+
			"(want at most a member id's and an address's worth each)", n, b, b>>10, msgs+1)
	}
}

// What a peer message's sender may call itself, and the addresses it may
// give: shaped like the coordinator's member ids and gossip addresses.
func TestPeerNamesAndAddressesMustLookLikeAMembers(t *testing.T) {
	for s, want := range map[string]bool{
		"ag-0123456789abcdef": true, "rl-0123456789abcdef": true, "ag-1": true,
		"": false, "Ag-1": false, "ag 1": false, "ag-1\n": false, "ag-ü": false, strings.Repeat("a", wire.MaxMemberID+1): false,
	} {
		if memberShaped(s) != want {
			t.Errorf("memberShaped(%q) = %v, want %v", s, !want, want)
		}
	}
	for s, want := range map[string]bool{
		"127.0.0.1:7946": true, "[fe80::1]:7946": true,
		"": false, "host:7946": false, "127.0.0.1": false, "127.0.0.1:0": false, "127.0.0.1:70000": false, "127.0.0.1:x": false,
		"[fe80::1%eth0]:7946" + strings.Repeat("0", maxPeerAddr): false,
	} {
		if got := validAddr(s) != ""; got != want {
			t.Errorf("validAddr(%q) kept: %v, want %v", s, got, want)
		}
	}
}

// forgedPolicy is a policy that does not verify.
func forgedPolicy() *wire.SignedPolicy {
	b, _ := proto.Marshal(&wire.Policy{Office: "wing", Revision: 99})
	return &wire.SignedPolicy{Policy: b, Signature: make([]byte, ed25519.SignatureSize), KeyId: "x"}
}

// A forged policy from an office peer is refused and the peer reported.
// Were each report to wake the agent's loop, each would be news: a run of
// the whole policy (every plugin) and a direct check-in. One holder of
// the office key, sending a small packet to each member a few times a
// second, would have the whole office run its policy and check in without
// end, and the coordinator would hear that whatever member the message
// names misbehaves. The peer is reported once per interval, with the next
// check-in, as the member it calls itself.
func TestForgedPeerMessagesAreReportedOnceAnIntervalWithoutARunOrCheckin(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.73")
	a := o.a
	const forged = 4
	kicks := 0
	var reports []string
	for range forged {
		o.send(t, &wire.PeerMessage{From: "ag-innocent", Body: &wire.PeerMessage_Policy{Policy: forgedPolicy()}})
		select {
		case <-a.kick:
			kicks++
		case <-time.After(2 * time.Second):
		}
		// What the loop does on a kick: news, so a run of the policy and a
		// direct check-in, which takes the peer reports.
		if a.news() {
			a.mu.Lock()
			reports = append(reports, a.peerReports...)
			a.peerReports = nil
			a.mu.Unlock()
			a.reported(told{revision: a.state.Revision(), report: a.state.Report()})
		}
	}
	if kicks > 0 {
		t.Fatalf("%d forged policies from one peer made %d kicks, each news (a policy run and a direct check-in); want none", forged, kicks)
	}
	if len(reports) != 1 || !strings.HasPrefix(reports[0], "a member calling itself ag-innocent: sent a policy that was refused") {
		t.Fatalf("the coordinator was told %q; want one report naming the sender as it calls itself", reports)
	}
}

// policySink counts the policies a member is sent.
type policySink struct {
	mu    sync.Mutex
	n, sz int
}

func (s *policySink) PeerChanged(gossip.Peer) {}
func (s *policySink) Message(b []byte) {
	var m wire.PeerMessage
	if proto.Unmarshal(b, &m) == nil && m.GetPolicy() != nil {
		s.mu.Lock()
		s.n, s.sz = s.n+1, s.sz+len(b)
		s.mu.Unlock()
	}
}
func (s *policySink) policies() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.sz
}

// holdLargePolicy has ag-1 take revision 6 of a few hundred items, as
// offices have.
func (o *gossipOffice) holdLargePolicy(t *testing.T) {
	t.Helper()
	pol := &wire.Policy{Office: "wing", Revision: 6}
	for i := range 300 {
		pol.Items = append(pol.Items, &wire.Item{Id: fmt.Sprintf("package-%03d-%s", i, strings.Repeat("v", 100))})
	}
	sp, err := wire.SignPolicy(o.priv, pol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.a.state.Accept(sp, "wing", "ag-1"); err != nil {
		t.Fatal(err)
	}
}

// A policy request costs its sender a small packet (HaveRevision 0, a
// name and an address) and the member that answers its whole signed
// policy, over a TCP stream when it is large. Answered every time, at the
// address the request gives when gossip does not list its sender, one
// holder of the office key would turn a trickle of packets into every
// member streaming its policy at whatever host it names. A request from
// a member gossip does not list is not answered.
func TestPolicyRequestsFromAMemberNotListedAreNotAnswered(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.81")
	o.holdLargePolicy(t)
	// A sink that is not in the office's gossip counts what it is sent.
	sink := &policySink{}
	n, err := gossip.New(gossip.Config{Name: "ag-sink", Bind: "127.0.0.83:0", Keys: [][]byte{o.key}, PassKey: o.priv.Public().(ed25519.PublicKey), Signer: o.priv, Handler: sink}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	const asks = 20
	req, _ := proto.Marshal(&wire.PeerMessage{From: "ag-ghost", Body: &wire.PeerMessage_PolicyRequest{PolicyRequest: &wire.PeerPolicyRequest{
		Office: "wing", HaveRevision: 0, ReplyTo: n.Addr()}}})
	for range asks {
		if err := o.intruder.Tell("ag-1", "", req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if got, bytes := sink.policies(); got > 0 {
		t.Fatalf("%d policy requests of %d bytes each (packets, from a member ag-1 does not list, answer to %s) were answered with %d policies, %d KiB in all; want none",
			asks, len(req), n.Addr(), got, bytes>>10)
	}
}

// A member gossip lists that asks for the policy again and again is
// answered a few times a while, not every time, and at its own address.
func TestRepeatedPolicyRequestsOfAListedMemberAreAnsweredAFewTimesAWhile(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.85")
	o.holdLargePolicy(t)
	sink := &policySink{}
	asker := o.join(t, "ag-asker", "127.0.0.87", sink)
	const asks = 20
	req, _ := proto.Marshal(&wire.PeerMessage{From: "ag-asker", Body: &wire.PeerMessage_PolicyRequest{PolicyRequest: &wire.PeerPolicyRequest{
		Office: "wing", HaveRevision: 0, ReplyTo: o.intruder.Addr()}}})
	for range asks {
		if err := asker.Tell("ag-1", "", req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { got, _ := sink.policies(); return got > 0 }, "the asker answered")
	time.Sleep(time.Second)
	if got, _ := sink.policies(); got > answerBurst {
		t.Fatalf("%d requests of one member in %v were answered %d times; want at most %d", asks, asks*20*time.Millisecond, got, answerBurst)
	}
}
