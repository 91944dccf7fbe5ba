package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// hostAddress is the private address the host has now, as a laptop's
// changes when it wakes up on another network ("" when it has none).
type hostAddress struct {
	mu sync.Mutex
	ip string
}

func (h *hostAddress) set(ip string) { h.mu.Lock(); h.ip = ip; h.mu.Unlock() }
func (h *hostAddress) get() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ip, nil
}

// roamingOffice is ag-1's office gossip bound to every address (as an
// agent's is by default), announcing the address host gives, and a peer
// ag-2 at peerIP in the same office.
func roamingOffice(t *testing.T, host *hostAddress, peerIP string) (*officeGossip, *gossip.Node, [][]byte) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	key := make([]byte, 32)
	rand.Read(key)
	ctx, cancel := context.WithCancel(context.Background())
	signer, pass := testutil.MemberPass(priv, "ag-1", wire.Role_ROLE_AGENT)
	g := &officeGossip{base: gossip.Config{Name: "ag-1", Bind: "0.0.0.0:0", PassKey: pub, Signer: signer, PrivateIP: host.get},
		pass: pass, parent: ctx, log: logging.Discard()}
	t.Cleanup(func() { g.stop(); cancel() })
	signer2, pass2 := testutil.MemberPass(priv, "ag-2", wire.Role_ROLE_AGENT)
	peer, err := gossip.New(gossip.Config{Name: "ag-2", Bind: peerIP + ":0", Keys: [][]byte{key}, PassKey: pub, Signer: signer2, Pass: pass2}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); peer.Run(pctx) }()
	t.Cleanup(func() { pcancel(); <-done })
	<-peer.Ready()
	return g, peer, [][]byte{key}
}

// listedAt is the address peer lists name at, "" when it does not.
func listedAt(peer *gossip.Node, name string) string {
	for _, p := range peer.Peers() {
		if p.Name == name {
			return p.Addr
		}
	}
	return ""
}

// A laptop that sleeps in one meeting room and wakes in another, or is
// docked, comes back with another address in the same office (the same
// office key). memberlist announces the address a member had when it
// started for as long as it runs: its peers went on probing, and asking
// for chunks at, an address nobody had any more — the member was dead to
// its office until the agent restarted, and its check-ins gave the
// coordinator the old address as a seed. A member bound to every address
// starts its gossip again when the address it would announce changes.
func TestOfficeGossipFollowsTheHostToANewAddress(t *testing.T) {
	host := &hostAddress{ip: "127.0.0.221"}
	g, peer, keys := roamingOffice(t, host, "127.0.0.223")
	if err := g.set(keys); err != nil {
		t.Fatal(err)
	}
	old := g.addr()
	if ip, _, _ := net.SplitHostPort(old); ip != "127.0.0.221" {
		t.Fatalf("ag-1 announces %s, want 127.0.0.221", old)
	}
	if _, err := g.join([]string{peer.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return listedAt(peer, "ag-1") == old }, "ag-2 lists ag-1 at %s", old)

	host.set("127.0.0.222") // woken up elsewhere
	g.follow()
	g.join([]string{peer.Addr()}) // as the office loop rejoins a member alone
	testutil.Eventually(t, 15*time.Second, func() bool {
		ip, _, _ := net.SplitHostPort(listedAt(peer, "ag-1"))
		return ip == "127.0.0.222"
	}, "ag-2 lists ag-1 at its new address (it lists it at %q, ag-1 announces %s)", listedAt(peer, "ag-1"), g.addr())
}

// A laptop that starts with no network (booted on a train) has no
// address to announce in its office's gossip. The agent stopped with an
// error at start, and its service manager started it again and again,
// running no policy at all where it is meant to keep running the last
// one. Its gossip now waits for an address and starts once there is one.
func TestOfficeGossipWaitsForAnAddressInsteadOfFailing(t *testing.T) {
	host := &hostAddress{}
	g, peer, keys := roamingOffice(t, host, "127.0.0.225")
	err := g.set(keys)
	if err == nil || !errors.Is(err, gossip.ErrNoAddress) {
		t.Fatalf("set with no address: %v, want gossip.ErrNoAddress (the agent goes on without gossip)", err)
	}
	host.set("127.0.0.224") // the network is back
	g.follow()
	if g.current() == nil {
		t.Fatal("ag-1's gossip did not start once the host had an address")
	}
	if _, err := g.join([]string{peer.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return listedAt(peer, "ag-1") != "" }, "ag-2 lists ag-1")
}
