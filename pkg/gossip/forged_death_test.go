package gossip

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// An office key holder without a pass declares ag-fx dead (memberlist's
// dead messages reach no delegate), and at once repeats one of ag-fx's
// old announcements (roll-up on, another content port) at incarnation
// 2^32-1, before ag-fx's refutation arrives (here: ag-fx hears nothing
// of ag-fa for a moment). Forgetting ag-fx's newest sequence as soon as
// it is declared dead would take that old announcement back for good
// (ag-fx's refutation wraps to incarnation 0): the others must keep
// following what ag-fx announces.
func TestOldAnnouncementReplayedAfterAForgedDeathIsRefused(t *testing.T) {
	key := officeKey()
	const ipA = "127.0.0.162"
	var cut atomic.Bool
	a := run(t, member(Config{Name: "ag-fa", Bind: ipA + ":0", Keys: [][]byte{key}}))
	x := run(t, member(Config{Name: "ag-fx", Bind: "127.0.0.163:0", Keys: [][]byte{key},
		Allow: func(host string) bool { return host != ipA || !cut.Load() }}))
	if _, err := x.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	x.SetHoldings(7000, nil)
	x.SetRollup(true)
	if !within(10*time.Second, func() bool {
		p, ok := peerOf(a, "ag-fx")
		return ok && p.Meta.Rollup && p.Meta.ContentPort == 7000
	}) {
		t.Fatal("ag-fa never listed ag-fx with roll-up on")
	}
	old := delegate{x}.NodeMeta(memberlist.MetaMaxSize)
	x.SetRollup(false)
	x.SetHoldings(7001, nil)
	if !within(10*time.Second, func() bool {
		p, ok := peerOf(a, "ag-fx")
		return ok && !p.Meta.Rollup && p.Meta.ContentPort == 7001
	}) {
		t.Fatal("ag-fa never saw ag-fx turn roll-up off")
	}

	ip, port := hostPort(t, x.Addr())
	vsn := memberlist.DefaultLocalConfig().BuildVsnArray()
	cut.Store(true)
	sendForged(t, a.Addr(), forge(t, key, mlDeadMsg, forgedDead{Incarnation: 1000, Node: "ag-fx", From: "ag-nobody"}))
	// memberlist handles alive messages before others that wait: the
	// death first.
	if !within(2*time.Second, func() bool { return !a.Lists("ag-fx") }) {
		t.Fatal("ag-fa did not take the forged death")
	}
	sendForged(t, a.Addr(), forge(t, key, mlAliveMsg, forgedAlive{
		Incarnation: math.MaxUint32, Node: "ag-fx", Addr: ip, Port: port, Meta: old, Vsn: vsn}))
	time.Sleep(150 * time.Millisecond)
	cut.Store(false)
	time.Sleep(time.Second)
	// ag-fx goes on announcing what it really does.
	x.SetHoldings(7002, nil)
	if !within(20*time.Second, func() bool {
		p, ok := peerOf(a, "ag-fx")
		return ok && !p.Meta.Rollup && p.Meta.ContentPort == 7002
	}) {
		p, ok := peerOf(a, "ag-fx")
		t.Fatalf("ag-fa lists ag-fx (%v) with roll-up=%v content port %d (a replayed old announcement); ag-fx announces roll-up=false content port 7002",
			ok, p.Meta.Rollup, p.Meta.ContentPort)
	}
}
