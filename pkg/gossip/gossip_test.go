package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// passKey stands for the coordinator's policy key in these tests.
var passKey, passPriv, _ = ed25519.GenerateKey(nil)

// member gives cfg what the coordinator gives a member of the name's: a
// gossip key and a pass for it.
func member(cfg Config) Config {
	cfg.PassKey = passKey
	cfg.Signer, cfg.Pass = testutil.MemberPass(passPriv, cfg.Name, wire.Role_ROLE_AGENT)
	return cfg
}

func start(t *testing.T, name, bind string, key []byte) *Node {
	t.Helper()
	n, err := New(member(Config{Name: name, Bind: bind, Keys: [][]byte{key}}), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.Run(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-n.Ready():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return n
}

// joinedNodes starts n members m0, m1, ... on net.1, net.2, ... with one key,
// all joined to m0.
func joinedNodes(t *testing.T, n int, net string) []*Node {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	var nodes []*Node
	for i := range n {
		nodes = append(nodes, start(t, fmt.Sprintf("m%d", i), fmt.Sprintf("%s.%d:0", net, i+1), key))
	}
	for _, m := range nodes[1:] {
		if _, err := m.Join([]string{nodes[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// run starts a node with cfg until the test ends.
func run(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	return n
}

func TestOfficeMembersSeeEachOtherAndRevisions(t *testing.T) {
	nodes := joinedNodes(t, 3, "127.0.0")
	nodes[2].SetRollup(true)
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, p := range nodes[0].Peers() {
			if p.Name == "m2" && p.Meta.Rollup {
				return len(nodes[0].Peers()) == 2
			}
		}
		return false
	}, "m0 did not learn of m1, m2 and what m2 announces")
}

func TestWrongOfficeKeyCannotJoin(t *testing.T) {
	k1, k2 := make([]byte, 32), make([]byte, 32)
	rand.Read(k1)
	rand.Read(k2)
	a := start(t, "a", "127.0.0.1:0", k1)
	b := start(t, "b", "127.0.0.2:0", k2)
	if _, err := b.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a member with another office's key joined")
	}
	if len(a.Peers()) != 0 {
		t.Fatalf("a sees %v", a.Peers())
	}
}

type recorder struct {
	mu    sync.Mutex
	msgs  [][]byte
	peers []Peer
}

func (r *recorder) PeerChanged(p Peer) { r.mu.Lock(); r.peers = append(r.peers, p); r.mu.Unlock() }
func (r *recorder) Message(b []byte)   { r.mu.Lock(); r.msgs = append(r.msgs, b); r.mu.Unlock() }

func TestSendAndPeerChanges(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	rec := &recorder{}
	a := run(t, member(Config{Name: "a", Bind: "127.0.0.5:0", Keys: [][]byte{key}, Handler: rec}))
	b := run(t, member(Config{Name: "b", Bind: "127.0.0.6:0", Keys: [][]byte{key}, Handler: nil}))
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	b.SetHoldings(9000, nil)
	testutil.Eventually(t, 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, p := range rec.peers {
			if p.Name == "b" && p.Meta.ContentPort == 9000 {
				return true
			}
		}
		return false
	}, "a was not told what b announces")
	big := make([]byte, 200_000) // far over a UDP packet
	rand.Read(big)
	if err := b.Send("a", big); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.msgs) == 1 && string(rec.msgs[0]) == string(big)
	}, "a did not get b's message")
	if err := b.Send("nobody", []byte("x")); err == nil {
		t.Fatal("sent to a member that does not exist")
	}
}

// Tell sends a small message as one packet and a large one over a stream;
// either way it arrives, also at an address the sender does not list.
func TestTellSmallAsPacketLargeAsStream(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	rec := &recorder{}
	a := run(t, member(Config{Name: "a", Bind: "127.0.0.7:0", Keys: [][]byte{key}, Handler: rec}))
	b := run(t, member(Config{Name: "b", Bind: "127.0.0.8:0", Keys: [][]byte{key}, Handler: nil}))
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(b.Peers()) == 1 }, "b does not list a")
	got := func(want int) func() bool {
		return func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.msgs) == want }
	}
	b.mu.Lock()
	tr := b.tr
	b.mu.Unlock()
	dials := tr.dials.Load()
	small := make([]byte, MaxPacketMessage)
	for i := range 20 {
		small[0] = byte(i)
		if err := b.Tell("a", "", small); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, got(20), "a did not get b's small messages")
	// memberlist's own push-pull may open one stream meanwhile; twenty
	// streams would be Tell's.
	if d := tr.dials.Load() - dials; d > 1 {
		t.Errorf("20 small messages opened %d streams", d)
	}
	dials = tr.dials.Load()
	big := make([]byte, MaxPacketMessage+1)
	if err := b.Tell("a", "", big); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, got(21), "a did not get b's large message")
	if tr.dials.Load() == dials {
		t.Error("a message over a packet went without a stream")
	}
	if err := b.Tell("stranger", a.Addr(), []byte("by address")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, got(22), "a did not get the message sent to its address")
	// A member this node lists is answered where it is listed, whatever
	// address a message gave: a member cannot point answers at another host.
	other := &recorder{}
	c := run(t, member(Config{Name: "c", Bind: "127.0.0.9:0", Keys: [][]byte{key}, Handler: other}))
	if err := b.Tell("a", c.Addr(), []byte("to a, not to c")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, got(23), "a did not get the message whose answer address named c")
	time.Sleep(200 * time.Millisecond)
	other.mu.Lock()
	if len(other.msgs) != 0 {
		t.Errorf("c, at the address given, got %d messages meant for a", len(other.msgs))
	}
	other.mu.Unlock()
	if err := b.Tell("nobody", "", []byte("x")); err == nil {
		t.Fatal("told a member that does not exist")
	}
	if err := b.Tell("nobody", "not an address", []byte("x")); err == nil {
		t.Fatal("told a malformed address")
	}
}

// A rumor reaches every member of the office by gossip alone when each
// member that hears it tells it on (as agents do with a revision), and a
// newer rumor on the same topic replaces the older one in the teller's
// queue.
func TestRumorReachesTheOffice(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	var recs []*retold
	var nodes []*Node
	for i := range 8 {
		rec := &retold{}
		n, err := New(member(Config{Name: fmt.Sprintf("r%d", i), Bind: fmt.Sprintf("127.0.0.%d:0", 30+i), Keys: [][]byte{key}, Handler: rec}), logging.Discard())
		if err != nil {
			t.Fatal(err)
		}
		rec.n = n
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); n.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-n.Ready()
		var seeds []string // every member so far: no wait for memberlist's own convergence
		for _, o := range nodes {
			seeds = append(seeds, o.Addr())
		}
		if len(seeds) > 0 {
			if _, err := n.Join(seeds); err != nil {
				t.Fatal(err)
			}
		}
		recs, nodes = append(recs, rec), append(nodes, n)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Peers()) != len(nodes)-1 {
				return false
			}
		}
		return true
	}, "the office did not form")
	if err := nodes[3].Rumor("revision", make([]byte, MaxRumor+1)); err == nil {
		t.Fatal("a rumor over the limit was taken")
	}
	if err := nodes[3].Rumor("revision", []byte("revision 1")); err != nil {
		t.Fatal(err)
	}
	if err := nodes[3].Rumor("revision", []byte("revision 2")); err != nil {
		t.Fatal(err)
	}
	if q := nodes[3].rumors.NumQueued(); q > 1 {
		t.Errorf("%d rumors queued on one topic", q)
	}
	heard := func(r *retold, what string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, m := range r.msgs {
			if string(m) == what {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for i, r := range recs {
			if i != 3 && !heard(r, "revision 2") {
				return false
			}
		}
		return true
	}, "the rumor did not reach every member")
}

// retold records what it hears and tells on each revision newer than the
// last it told, as an agent does. Telling only the first rumor heard let a
// member that first heard revision 1 (sent before revision 2 replaced it
// in the teller's queue) never pass revision 2 on, and revision 2 could
// then die out under load before it reached everyone.
type retold struct {
	recorder
	n    *Node
	told []byte
}

func (r *retold) Message(b []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, b)
	newer := bytes.Compare(b, r.told) > 0
	if newer {
		r.told = b
	}
	r.mu.Unlock()
	if newer {
		r.n.Rumor("revision", b)
	}
}

// A change of what a member announces (what it holds, whether it carries
// the office's check-ins) reaches every member of a small office in one
// or two gossip waves, not at the next push/pull (15 s here, 30 s on a
// LAN): with memberlist's local timers as they were, one change in four
// reached some member of a 5-member office only that way.
func TestMetadataReachesEveryMemberOfASmallOffice(t *testing.T) {
	nodes := joinedNodes(t, 5, "127.0.3")
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Peers()) != 4 {
				return false
			}
		}
		return true
	}, "the office did not form")
	// sees says whether every other member sees src announce rollup.
	sees := func(src *Node, rollup bool) bool {
		for _, n := range nodes {
			if n == src {
				continue
			}
			seen := false
			for _, p := range n.Peers() {
				seen = seen || (p.Name == src.cfg.Name && p.Meta.Rollup == rollup)
			}
			if !seen {
				return false
			}
		}
		return true
	}
	var slowest time.Duration
	for round := range 40 {
		src, on := nodes[round%5], round%10 < 5
		began := time.Now()
		src.SetRollup(on)
		testutil.Eventually(t, 5*time.Second, func() bool { return sees(src, on) },
			"change %d (%s announces rollup=%v) did not reach every member within 5 s", round, src.cfg.Name, on)
		slowest = max(slowest, time.Since(began))
	}
	t.Logf("40 changes; the slowest reached every member in %v", slowest.Round(time.Millisecond))
}

// One change of metadata is announced twice in a small office, the change
// and its second wave, and then no more: a member that says nothing new
// is quiet.
func TestOneChangeTwoAnnouncements(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	n := start(t, "m0", "127.0.3.20:0", key)
	time.Sleep(2 * reannounceAfter) // anything its start announced
	before := n.announced.Load()
	n.SetRollup(true)
	time.Sleep(4 * reannounceAfter)
	if got := n.announced.Load() - before; got != 2 {
		t.Fatalf("one change made %d announcements in %v, want 2", got, 4*reannounceAfter)
	}
}

// An office key is not a membership: whoever holds it (a stolen laptop, a
// member gone bad) is listed by nobody unless it announces a pass the
// coordinator signed for its name, signed with the pass's key for its
// address. Real members on loopback.
func TestOfficeKeyHoldersWithoutAPassAreNotListed(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	a := run(t, member(Config{Name: "ag-a", Bind: "127.0.0.60:0", Keys: [][]byte{key}}))
	b := run(t, member(Config{Name: "ag-b", Bind: "127.0.0.61:0", Keys: [][]byte{key}}))
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	// ag-gone's pass, seen going by, announced by someone with another key.
	_, gonePass := testutil.MemberPass(passPriv, "ag-gone", wire.Role_ROLE_RELAY)
	_, thiefKey, _ := ed25519.GenerateKey(nil)
	// A pass the coordinator did not sign, for a relay.
	_, forger, _ := ed25519.GenerateKey(nil)
	liarKey, liarPass := testutil.MemberPass(forger, "rl-liar", wire.Role_ROLE_RELAY)
	nopass := member(Config{Name: "ag-nopass", Bind: "127.0.0.62:0", Keys: [][]byte{key}})
	nopass.Pass = nil
	intruders := []*Node{
		run(t, nopass),
		run(t, Config{Name: "ag-gone", Bind: "127.0.0.63:0", Keys: [][]byte{key}, PassKey: passKey, Signer: thiefKey, Pass: gonePass}),
		run(t, Config{Name: "rl-liar", Bind: "127.0.0.64:0", Keys: [][]byte{key}, PassKey: passKey, Signer: liarKey, Pass: liarPass}),
	}
	for _, in := range intruders {
		if _, err := in.Join([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	// Let gossip go round: the intruders hear of ag-a and ag-b, push their
	// state to them and gossip about themselves.
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, in := range intruders {
			if !in.Lists("ag-a") || !in.Lists("ag-b") {
				return false
			}
		}
		return a.Lists("ag-b") && b.Lists("ag-a")
	}, "the office did not form")
	time.Sleep(2 * time.Second)
	for _, n := range []*Node{a, b} {
		if peers := n.Peers(); len(peers) != 1 {
			t.Fatalf("a member lists %v; want only the other member with a pass", peers)
		}
	}
	// A member that gets its pass (from its next check-in) is listed.
	sp, err := wire.SignPass(passPriv, &wire.MemberPass{MemberId: "ag-nopass", Role: wire.Role_ROLE_AGENT,
		GossipKey: nopass.Signer.Public().(ed25519.PublicKey), NotAfterUnix: wire.PassExpiry(time.Now()).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := wire.EncodePass(sp)
	if err := intruders[0].SetPass(gonePass); err == nil {
		t.Fatal("SetPass took another member's pass")
	}
	if err := intruders[0].SetPass(pass); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return a.Lists("ag-nopass") && b.Lists("ag-nopass") },
		"a member that got its pass is still not listed")
	for _, p := range a.Peers() {
		if p.Name == "ag-nopass" && p.Meta.Role != "agent" {
			t.Fatalf("listed as %q", p.Meta.Role)
		}
	}
}

// Peers that died or left are tried again for a day, at most maxFailed of
// them: when the list is full the oldest makes room, so that in a large
// office, where laptops leave every day, the newest failures (the likeliest
// to come back) are still retried.
func TestFailedPeersListKeepsTheNewest(t *testing.T) {
	key := make([]byte, 32)
	n, err := New(member(Config{Name: "ag-f", Bind: "127.0.0.1:0", Keys: [][]byte{key}}), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	for i := range maxFailed {
		n.failed[fmt.Sprintf("ag-%d", i)] = failedPeer{addr: "127.0.0.2:1", since: start.Add(time.Duration(i) * time.Second)}
	}
	events{n}.NotifyLeave(&memberlist.Node{Name: "ag-new", Addr: net.ParseIP("127.0.0.3"), Port: 7946})
	if _, ok := n.failed["ag-new"]; !ok || len(n.failed) != maxFailed {
		t.Fatalf("the newest failure is not kept (%d kept)", len(n.failed))
	}
	if _, ok := n.failed["ag-0"]; ok {
		t.Fatal("the oldest failure was not the one dropped")
	}
}
