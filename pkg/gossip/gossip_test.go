package gossip

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

func start(t *testing.T, name, bind string, key []byte) *Node {
	t.Helper()
	n, err := New(Config{Name: name, Bind: bind, Keys: [][]byte{key}, Role: "agent"}, logging.Discard())
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

func TestOfficeMembersSeeEachOtherAndRevisions(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	var nodes []*Node
	for i := range 3 {
		nodes = append(nodes, start(t, fmt.Sprintf("m%d", i), fmt.Sprintf("127.0.0.%d:0", i+1), key))
	}
	for _, n := range nodes[1:] {
		if _, err := n.Join([]string{nodes[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	nodes[2].SetRevision(7)
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, p := range nodes[0].Peers() {
			if p.Name == "m2" && p.Meta.Revision == 7 {
				return len(nodes[0].Peers()) == 2
			}
		}
		return false
	}, "m0 did not learn of m1, m2 and m2's revision")
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
	mk := func(name, bind string, h Handler) *Node {
		n, err := New(Config{Name: name, Bind: bind, Keys: [][]byte{key}, Handler: h}, logging.Discard())
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
	a := mk("a", "127.0.0.5:0", rec)
	b := mk("b", "127.0.0.6:0", nil)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	b.SetRevision(9)
	testutil.Eventually(t, 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, p := range rec.peers {
			if p.Name == "b" && p.Meta.Revision == 9 {
				return true
			}
		}
		return false
	}, "a was not told of b's revision")
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
