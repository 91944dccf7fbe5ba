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
