package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/outposthq/outpost/pkg/gossip"
)

// officeGossip runs the agent's place in its office's gossip, and moves it
// when the agent changes office (a new key) or leaves every office
// (roaming: no gossip at all), without restarting the agent.
type officeGossip struct {
	base   gossip.Config   // everything but Keys
	parent context.Context // the agent's: nodes live until it ends
	log    *slog.Logger

	mu   sync.Mutex
	node *gossip.Node
	keys [][]byte // primary first
	// want are the keys of the office the agent is in, whether or not a
	// node runs: one that could not start (no address yet) is started
	// by follow.
	want   [][]byte
	cancel context.CancelFunc
	done   chan error
	// What this member serves to peers, announced by every node it runs.
	contentPort int
	holdings    gossip.Holdings
	rollup      bool
	pass        []byte // the member pass, announced by every node it runs
}

// set makes the agent a member of the office whose keys are keys, the
// primary first; none leaves gossip. A rotation of the office's key
// (the new keys share one with the old) is done in place; anything else
// (another office) starts a new node. It returns once that node listens.
func (g *officeGossip) set(keys [][]byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.want = keys
	if sameKeys(keys, g.keys) && (g.node != nil) == (len(keys) > 0) {
		return nil
	}
	if g.node != nil && len(keys) > 0 && g.node.SetKeys(keys) == nil {
		g.log.Info("office gossip keys changed", "keys", len(keys))
		g.keys = keys
		return nil
	}
	g.stopLocked()
	if len(keys) == 0 {
		g.log.Info("left office gossip")
		return nil
	}
	return g.startLocked(keys)
}

// startLocked starts a node with keys and returns once it listens.
func (g *officeGossip) startLocked(keys [][]byte) error {
	cfg := g.base
	cfg.Keys, cfg.Pass = keys, g.pass
	node, err := gossip.New(cfg, g.log)
	if err != nil {
		return err
	}
	nctx, cancel := context.WithCancel(g.parent)
	done := make(chan error, 1)
	go func() { done <- node.Run(nctx) }()
	select {
	case <-node.Ready():
	case err := <-done:
		cancel()
		return err
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		return context.DeadlineExceeded
	}
	node.SetHoldings(g.contentPort, g.holdings)
	node.SetRollup(g.rollup)
	g.node, g.keys, g.cancel, g.done = node, keys, cancel, done
	return nil
}

// follow starts this member's gossip again when the address it would
// announce has changed — a laptop that woke up on another network, or was
// docked: memberlist announces the address a member started with for as
// long as it runs, and peers would probe and fetch from one the host no
// longer has — and starts the gossip of the office the agent is in if it
// could not start before (the host had no address yet). It reports
// whether it started a node: the caller rejoins the office.
func (g *officeGossip) follow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(g.want) == 0:
		return false
	case g.node == nil:
	case g.node.AddressMoved():
		g.log.Info("this host's address changed: office gossip starts again at the new one", "was", g.node.Addr())
		g.stopLocked()
	default:
		return false
	}
	if err := g.startLocked(g.want); err != nil {
		g.log.Debug("start office gossip", "err", err)
		return false
	}
	g.log.Info("office gossip started", "addr", g.node.Addr())
	return true
}

func sameKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func (g *officeGossip) stopLocked() {
	if g.node == nil {
		return
	}
	g.cancel()
	<-g.done
	g.node, g.keys, g.cancel, g.done = nil, nil, nil, nil
}

func (g *officeGossip) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *officeGossip) current() *gossip.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.node
}

func (g *officeGossip) addr() string {
	if n := g.current(); n != nil {
		return n.Addr()
	}
	return ""
}

func (g *officeGossip) peers() []gossip.Peer {
	if n := g.current(); n != nil {
		return n.Peers()
	}
	return nil
}

func (g *officeGossip) numPeers() int {
	if n := g.current(); n != nil {
		return n.NumPeers()
	}
	return 0
}

// lists tells whether name is a live member of the office's gossip.
func (g *officeGossip) lists(name string) bool {
	if n := g.current(); n != nil {
		return n.Lists(name)
	}
	return false
}

func (g *officeGossip) anyPeer() string {
	if n := g.current(); n != nil {
		return n.AnyPeer()
	}
	return ""
}

func (g *officeGossip) join(seeds []string) (int, error) {
	if n := g.current(); n != nil {
		return n.Join(seeds)
	}
	return 0, nil
}

// rumor tells the office msg by gossip (gossip.Node.Rumor).
func (g *officeGossip) rumor(topic string, msg []byte) error {
	n := g.current()
	if n == nil {
		return errors.New("not in any office's gossip")
	}
	return n.Rumor(topic, msg)
}

func (g *officeGossip) setHoldings(port int, h gossip.Holdings) {
	g.mu.Lock()
	g.contentPort, g.holdings = port, h
	n := g.node
	g.mu.Unlock()
	if n != nil {
		n.SetHoldings(port, h)
	}
}

// setPass announces a new member pass.
func (g *officeGossip) setPass(pass []byte) error {
	g.mu.Lock()
	g.pass = pass
	n := g.node
	g.mu.Unlock()
	if n != nil {
		return n.SetPass(pass)
	}
	return nil
}

// setRollup announces whether this member can carry the office's
// check-ins (it reaches the coordinator).
func (g *officeGossip) setRollup(on bool) {
	g.mu.Lock()
	g.rollup = on
	n := g.node
	g.mu.Unlock()
	if n != nil {
		n.SetRollup(on)
	}
}

// tell hands msg to a peer as a packet when it is small
// (gossip.Node.Tell).
func (g *officeGossip) tell(to, addr string, msg []byte) error {
	n := g.current()
	if n == nil {
		return errors.New("not in any office's gossip")
	}
	return n.Tell(to, addr, msg)
}

func (g *officeGossip) send(to string, msg []byte) error {
	n := g.current()
	if n == nil {
		return errors.New("not in any office's gossip")
	}
	return n.Send(to, msg)
}

// WithGossipAllow cuts the agent's office gossip off from the hosts allow
// refuses (tests partition an office with it).
func WithGossipAllow(allow func(host string) bool) Option {
	return func(a *Agent) { a.gossipAllow = allow }
}
