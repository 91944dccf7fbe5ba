// Package gossip is an office's membership: one memberlist cluster per
// office, encrypted with the office key, whose members (agents and relays)
// announce their role, whether they carry the office's check-ins and, for
// the office peer cache, the port they serve chunks on and a fixed-size
// filter of the artifacts they hold (holdings.go). Besides what members
// say about themselves it carries messages between two members and
// rumors to the whole office (a new policy revision). Deciding what to do
// about any of it is the caller's.
//
// What a member announces about itself changes rarely: each change is an
// announcement every other member hears, so news that many members have
// at once (a revision) is a rumor instead, which each member passes on
// once.
package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/outposthq/outpost/pkg/wire"
)

// Config says how a member joins its office.
type Config struct {
	Name      string   // the member id
	Bind      string   // host:port to listen on, TCP and UDP
	Advertise string   // host:port others reach; empty means Bind
	Keys      [][]byte // office keys, the primary first
	// PassKey is the coordinator's policy key: a peer is listed only when
	// it announces a member pass signed with it for its name, and signs
	// what it announces with the pass's key (meta.go).
	PassKey ed25519.PublicKey
	// Signer is this member's gossip key, the one its pass names, and
	// Pass its pass (wire.SignedMemberPass, encoded). A member without a
	// pass is listed by nobody until it has one (SetPass).
	Signer ed25519.PrivateKey
	Pass   []byte
	// LAN uses memberlist's LAN timers; otherwise the fast local ones
	// (tests on loopback).
	LAN bool
	// SuspicionMult, if set, replaces the default (officeSuspicionMult
	// with LAN timers, memberlist's otherwise): a member that does not
	// answer is declared dead after SuspicionMult · log10(office size)
	// probe intervals of suspicion.
	SuspicionMult int
	// ProbeInterval, if set, replaces the default probe interval
	// (officeProbeInterval with LAN timers, memberlist's otherwise). Longer
	// probes cost less and find a dead member later. A longer interval
	// also gives a probe longer to be answered (5/8 of the interval, as
	// officeProbeTimeout is of officeProbeInterval): a member that is slow
	// for a moment is not suspected, and its office does not spend the
	// CPU of a suspicion and its refutation going round.
	ProbeInterval time.Duration
	// Handler, if set, hears of peers' changes and their messages.
	Handler Handler
	// Allow, if set, is asked about each host this member talks to:
	// traffic to and from a host it refuses is dropped. For tests that cut
	// an office in two.
	Allow func(host string) bool
	// PrivateIP, if set, replaces how a member bound to every address
	// finds the private address it announces (tests move a host with it).
	PrivateIP func() (string, error)
}

// Handler is told what the office says. Its methods are called from
// memberlist's goroutines and must not block.
type Handler interface {
	// PeerChanged is called when a peer joins or announces new metadata.
	PeerChanged(p Peer)
	// Message is called with a message a peer sent this member. memberlist
	// does not say who sent it: a protocol that needs to know says so in
	// its messages.
	Message(msg []byte)
}

// MaxMessage bounds a message between members.
const MaxMessage = 8 << 20

// Meta is what a member announces (meta.go).
type Meta struct {
	// Role is "agent" or "relay", as the member's pass says.
	Role string
	// ContentPort is where the member serves artifact chunks to office
	// peers (HTTPS, at its gossip address); 0 when it does not.
	ContentPort int
	// Holdings is a filter of the artifacts it holds.
	Holdings Holdings
	// Rollup: the member reaches the coordinator and carries its office's
	// check-ins (the office elects one of those that say so).
	Rollup bool
}

// Peer is another member as gossip sees it.
type Peer struct {
	Name string
	Addr string
	Meta Meta

	ip   net.IP
	port uint16
}

// Node is this member's place in the office's gossip.
type Node struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex
	meta Meta
	pass []byte // this member's pass, announced with meta
	// selfIP and selfPort are the address this member announces itself
	// at, which its signature covers.
	selfIP   net.IP
	selfPort uint16
	// seq is the sequence of this member's last announcement.
	seq    uint64
	verify *verifier
	ml     *memberlist.Memberlist
	ready  chan struct{}
	// peers is our own copy of the membership, kept from memberlist's
	// events: the *Node values memberlist hands out change under it.
	peers map[string]Peer
	addr  string
	keys  *memberlist.Keyring
	// announced counts the announcements of this member's metadata.
	announced atomic.Int64
	// dirty asks the announcer to re-advertise this member's metadata.
	dirty chan struct{}
	// rumors are this member's broadcasts to its office, piggy-backed on
	// memberlist's gossip; nil until Run.
	rumors *memberlist.TransmitLimitedQueue
	// members counts the peers, for the rumors' retransmit limit.
	members atomic.Int32
	tr      *transport // nil until Run
	// failed are peers that died or left: this member tries to rejoin
	// them now and then, so that an office cut in two by its network
	// becomes one again once it heals (memberlist alone forgets them).
	failed map[string]failedPeer
}

type failedPeer struct {
	addr  string
	since time.Time
}

const (
	// reconnectFor is how long a dead peer is tried again.
	reconnectFor = 24 * time.Hour
	// maxFailed bounds the peers remembered for that.
	maxFailed = 1024
	// forgetAfter is how long a peer that died or left stays gone before
	// an older announcement of it is taken: longer than memberlist keeps a
	// dead member (30 s with LAN timers), after which a member that is
	// alive is back with a newer one.
	forgetAfter = 2 * time.Minute
)

// New checks the configuration; Run joins.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("gossip: a member name is required")
	}
	if len(cfg.Keys) == 0 {
		return nil, fmt.Errorf("gossip: the office key is missing; enrol again")
	}
	for _, k := range cfg.Keys {
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, fmt.Errorf("gossip: office key has %d bytes, want 16, 24 or 32", l)
		}
	}
	if _, _, err := splitHostPort(cfg.Bind); err != nil {
		return nil, fmt.Errorf("gossip bind address %q: %w", cfg.Bind, err)
	}
	if len(cfg.PassKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("gossip: the coordinator's key has %d bytes, want %d", len(cfg.PassKey), ed25519.PublicKeySize)
	}
	if len(cfg.Signer) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("gossip: this member's gossip key has %d bytes, want %d", len(cfg.Signer), ed25519.PrivateKeySize)
	}
	n := &Node{cfg: cfg, log: logger.With("component", "gossip"), verify: newVerifier(cfg.PassKey), ready: make(chan struct{}), dirty: make(chan struct{}, 1), peers: map[string]Peer{}, failed: map[string]failedPeer{}}
	if err := n.checkPass(cfg.Pass); err != nil {
		n.log.Warn("this member's pass is not usable: office peers will not list it until the coordinator issues a new one at check-in", "err", err)
	} else {
		n.pass = cfg.Pass
	}
	return n, nil
}

// checkPass tells whether pass is one this member can announce: signed by
// the coordinator, for this member's name and gossip key.
func (n *Node) checkPass(pass []byte) error {
	if len(pass) == 0 {
		return errNoPass
	}
	p, err := wire.VerifyPass(n.cfg.PassKey, pass, time.Now())
	if err != nil {
		return err
	}
	if p.GetMemberId() != n.cfg.Name {
		return fmt.Errorf("the pass is for %s, not %s", p.GetMemberId(), n.cfg.Name)
	}
	if !bytes.Equal(p.GetGossipKey(), n.cfg.Signer.Public().(ed25519.PublicKey)) {
		return errors.New("the pass names another gossip key")
	}
	return nil
}

// SetPass announces a new pass for this member (a renewed one). A pass
// that is not for this member and its gossip key is refused.
func (n *Node) SetPass(pass []byte) error {
	if err := n.checkPass(pass); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	n.mu.Lock()
	same := bytes.Equal(n.pass, pass)
	n.pass = bytes.Clone(pass)
	n.mu.Unlock()
	if !same {
		n.markDirty()
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}

// Run listens until ctx ends, then leaves the office gracefully.
func (n *Node) Run(ctx context.Context) error {
	c := memberlist.DefaultLocalConfig()
	if n.cfg.LAN {
		c = memberlist.DefaultLANConfig()
	}
	c.Name = n.cfg.Name
	// memberlist's local timers send each announcement half as often as
	// its LAN ones: a test's office would miss more than a real one.
	c.RetransmitMult = max(c.RetransmitMult, memberlist.DefaultLANConfig().RetransmitMult)
	if n.cfg.LAN {
		c.SuspicionMult = officeSuspicionMult
		c.ProbeInterval, c.ProbeTimeout = officeProbeInterval, officeProbeTimeout
	}
	if n.cfg.SuspicionMult > 0 {
		c.SuspicionMult = n.cfg.SuspicionMult
	}
	if n.cfg.ProbeInterval > 0 {
		c.ProbeInterval = n.cfg.ProbeInterval
		c.ProbeTimeout = max(c.ProbeTimeout, n.cfg.ProbeInterval*5/8)
	}
	host, port, _ := splitHostPort(n.cfg.Bind)
	c.BindAddr, c.BindPort = host, port
	if n.cfg.Advertise != "" {
		ah, ap, err := splitHostPort(n.cfg.Advertise)
		if err != nil {
			return fmt.Errorf("gossip advertise address %q: %w", n.cfg.Advertise, err)
		}
		c.AdvertiseAddr, c.AdvertisePort = ah, ap
	}
	kr, err := memberlist.NewKeyring(n.cfg.Keys, n.cfg.Keys[0])
	if err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	c.Keyring = kr
	n.mu.Lock()
	n.keys = kr
	n.mu.Unlock()
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	// Gossip packets are small and stay on the office's network: memberlist's
	// LZW compression (a new 64 KiB table per packet) was the biggest CPU
	// cost of a 200-member office and saved next to nothing. Members still
	// read compressed packets from members that send them.
	c.EnableCompression = false
	c.Delegate = delegate{n}
	c.Events = events{n}
	c.Alive = alive{n}
	c.Logger = slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	reconnect := 2 * time.Second
	if n.cfg.LAN {
		reconnect = 15 * time.Second
	}
	tr, err := newTransport(host, port, c.Logger)
	if err != nil {
		return fmt.Errorf("gossip: listen on %s: %w", n.cfg.Bind, err)
	}
	if n.cfg.PrivateIP != nil {
		tr.privateIP = n.cfg.PrivateIP
	}
	c.Transport = tr
	if n.cfg.Allow != nil {
		c.Transport = newFiltered(tr, n.cfg.Allow)
	}
	// The address memberlist will announce, worked out as it will, so that
	// the first announcement is signed for it.
	selfIP, selfPort, err := c.Transport.FinalAdvertiseAddr(c.AdvertiseAddr, c.AdvertisePort)
	if err != nil {
		c.Transport.Shutdown()
		return fmt.Errorf("gossip: %w", err)
	}
	n.mu.Lock()
	n.selfIP, n.selfPort = selfIP, uint16(selfPort)
	n.mu.Unlock()
	ml, err := memberlist.Create(c)
	if err != nil {
		c.Transport.Shutdown() // memberlist closes only what it made
		return fmt.Errorf("gossip: listen on %s: %w", n.cfg.Bind, err)
	}
	// Read once, before anything else can touch the local node: memberlist
	// changes the *Node it hands out under its own lock.
	ln := ml.LocalNode()
	addr := net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	n.mu.Lock()
	moved := !ln.Addr.Equal(n.selfIP) || ln.Port != n.selfPort
	n.selfIP, n.selfPort = ln.Addr, ln.Port
	n.ml, n.addr, n.tr = ml, addr, tr
	// Not ml.NumMembers: memberlist asks for broadcasts while it holds
	// its own lock, and taking it again can deadlock.
	// Every member that takes a rumor's news tells its own rumor, so an
	// office carries members × limit copies, the limit being memberlist's
	// own (4 × ⌈log10(members + 1)⌉): a member misses all of them with a
	// chance of about e^-limit (6 in a million at 100 members), and then
	// the push that backs the rumor up or the anti-entropy reaches it.
	// Twice that limit was half of what a rollout cost an office's CPU.
	// Offices under 99 members count as 99, so that no limit is under 8.
	n.rumors = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return max(int(n.members.Load())+1, minRumorOffice) }, RetransmitMult: c.RetransmitMult}
	n.mu.Unlock()
	close(n.ready)
	n.log.Info("gossip listening", "addr", n.Addr())
	if moved { // not what FinalAdvertiseAddr said: sign again
		n.markDirty()
	}
	actx, stopAnnounce := context.WithCancel(ctx)
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		n.announce(actx, ml)
	}()
	t := time.NewTicker(reconnect)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			n.reconnect(ml)
			n.dropExpired()
			n.forgetGone()
		}
	}
	stopAnnounce()
	<-announced
	if err := ml.Leave(2 * time.Second); err != nil {
		n.log.Debug("leave office gossip", "err", err)
	}
	return ml.Shutdown()
}

// dropExpired stops listing peers whose pass has ended: memberlist keeps
// a member that answers its probes, whatever its pass says, and checks a
// pass only with each new announcement. A member dropped so is listed
// again when it announces a pass that is good.
func (n *Node) dropExpired() {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.peers {
		if n.verify.expired(name, now) {
			n.log.Info("office peer's member pass has ended: no longer listed", "peer", name)
			delete(n.peers, name)
		}
	}
	n.members.Store(int32(len(n.peers)))
}

// forgetGone forgets what was verified of peers that died or left more
// than forgetAfter ago and did not come back: one restarted with its clock
// set back is listed again from then on.
func (n *Node) forgetGone() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, f := range n.failed {
		if time.Since(f.since) > forgetAfter {
			n.verify.forget(name)
		}
	}
}

// reconnect tries to rejoin one peer that died, if there is one.
func (n *Node) reconnect(ml *memberlist.Memberlist) {
	n.mu.Lock()
	var addr string
	for name, f := range n.failed {
		if time.Since(f.since) > reconnectFor {
			delete(n.failed, name)
			continue
		}
		addr = f.addr // map order: a different one each time, near enough
		break
	}
	n.mu.Unlock()
	if addr == "" {
		return
	}
	if _, err := ml.Join([]string{addr}); err != nil {
		n.log.Debug("rejoin a peer that died", "addr", addr, "err", err)
	}
}

// AddressMoved tells whether this member, bound to every address of its
// host and announcing a private one of them (no Advertise), would now
// announce another: the host moved to another network. memberlist
// announces the address a member started with for as long as it runs, so
// such a member must start again to be reached. A host with no address
// for now (Wi-Fi lost) has not moved: it may come back where it was.
func (n *Node) AddressMoved() bool {
	n.mu.Lock()
	tr, ip := n.tr, n.selfIP
	n.mu.Unlock()
	if tr == nil || !tr.bindAll || n.cfg.Advertise != "" {
		return false
	}
	now, _, err := tr.FinalAdvertiseAddr("", 0)
	return err == nil && !now.Equal(ip)
}

// Name is this member's name in gossip, its member id.
func (n *Node) Name() string { return n.cfg.Name }

// Ready is closed once the node listens.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Addr is the address others join, once Ready.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// SetKeys changes the office keys in place, the primary first: new keys
// are added, the primary is switched, keys not listed are dropped. It fails
// when none of keys is one the node holds now — such a node must start
// again with the new keys (it could not talk to anyone in between).
func (n *Node) SetKeys(keys [][]byte) error {
	n.mu.Lock()
	kr := n.keys
	n.mu.Unlock()
	if kr == nil || len(keys) == 0 {
		return fmt.Errorf("gossip: not running or no keys")
	}
	held := kr.GetKeys()
	shared := false
	for _, k := range keys {
		for _, h := range held {
			shared = shared || bytes.Equal(k, h)
		}
	}
	if !shared {
		return fmt.Errorf("gossip: none of the new office keys is held")
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("gossip: add office key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip: use office key: %w", err)
	}
	for _, h := range held {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, h)
		}
		if !keep {
			if err := kr.RemoveKey(h); err != nil {
				return fmt.Errorf("gossip: drop office key: %w", err)
			}
		}
	}
	return nil
}

// Join contacts seeds; it is a no-op before Ready and when seeds is empty.
func (n *Node) Join(seeds []string) (int, error) {
	n.mu.Lock()
	ml := n.ml
	n.mu.Unlock()
	if ml == nil || len(seeds) == 0 {
		return 0, nil
	}
	return ml.Join(seeds)
}

// SetHoldings announces the port this member serves content on and the
// artifacts it holds.
func (n *Node) SetHoldings(port int, h Holdings) {
	n.setMeta(func(m *Meta) { m.ContentPort, m.Holdings = port, h })
}

// SetRollup announces whether this member can carry the office's
// check-ins to the coordinator now.
func (n *Node) SetRollup(on bool) {
	n.setMeta(func(m *Meta) { m.Rollup = on })
}

// setMeta changes what this member announces and has it announced. It
// never waits for the office: memberlist's UpdateNode blocks until its
// broadcast has gone round (most of a second in a large office), and a
// member that is passing a new revision on must not stand still for that.
func (n *Node) setMeta(change func(*Meta)) {
	n.mu.Lock()
	old := n.meta
	change(&n.meta)
	changed := old.ContentPort != n.meta.ContentPort ||
		old.Rollup != n.meta.Rollup || !bytes.Equal(old.Holdings, n.meta.Holdings)
	n.mu.Unlock()
	if changed {
		n.markDirty()
	}
}

// markDirty has this member announced again.
func (n *Node) markDirty() {
	select {
	case n.dirty <- struct{}{}:
	default: // an announcement is due already; it will read the newest
	}
}

// announce re-advertises this member whenever its metadata changed, one
// announcement at a time so that the newest metadata always carries the
// highest incarnation; changes made while one goes out are folded into the
// next.
func (n *Node) announce(ctx context.Context, ml *memberlist.Memberlist) {
	var again <-chan time.Time
	for {
		second := false
		select {
		case <-ctx.Done():
			return
		case <-n.dirty:
		case <-again:
			second = true
		}
		again = nil
		// The wait is only pacing: the broadcast stays queued after it.
		n.announced.Add(1)
		if err := ml.UpdateNode(announcePace); err != nil {
			n.log.Debug("announce", "err", err)
		}
		// memberlist sends an announcement RetransmitMult × ⌈log10(n+1)⌉
		// times from each member that takes it: 4 times in an office
		// under 10. Each member then misses it with a chance of about
		// e^-4 (2 %), and goes by the old metadata (who holds what, who
		// carries the office's check-ins) until the next push/pull, up to
		// 30 s later: measured, one announcement in four reached some
		// member of a 5-member office only that way with 2 sends each.
		// A second wave a moment later, unless a newer change makes one
		// anyway, squares that chance; larger offices send each
		// announcement 8 times or more and need none.
		if !second && n.members.Load()+1 < smallOffice {
			again = time.After(reannounceAfter)
		}
	}
}

// smallOffice is the office size under which a change of metadata is
// announced twice; reannounceAfter is the wait before the second wave.
const (
	smallOffice     = 10
	reannounceAfter = time.Second
)

// announcePace bounds how often a member re-announces itself while its
// metadata keeps changing (a download's holdings, say).
const announcePace = 100 * time.Millisecond

// officeSuspicionMult and officeProbeInterval are the agents' failure
// detector, where memberlist's LAN defaults are 4 and 1 s: in an office of
// 200 a member that died was gone from every list after p50 13 s / max
// 14.5 s with the defaults, 9.1 / 10.15 s with multiplier 3, and 7.5 /
// 8.6 s with multiplier 3 and probes every 800 ms (25 % more probe
// packets); with each, five members starved of CPU for 5 s made no
// healthy member dead (README, failure detection).
const (
	officeSuspicionMult = 3
	officeProbeInterval = 800 * time.Millisecond
	officeProbeTimeout  = 500 * time.Millisecond // memberlist's LAN default
)

// minRumorOffice is the office size rumors are told for at least.
const minRumorOffice = 99

// MaxRumor bounds a rumor: it must fit in one gossip packet beside
// memberlist's own messages.
const MaxRumor = 1024

// Rumor has msg piggy-backed on this member's gossip: sent to a few
// members at random, a few times (memberlist's retransmit limit, which
// grows with the log of the office's size). Members hear it at
// Handler.Message like a message sent to them; an office spreads news by
// each member that takes it telling its own rumor (an epidemic). A rumor
// replaces this member's older one on the same topic that is still going
// round.
func (n *Node) Rumor(topic string, msg []byte) error {
	if len(msg) > MaxRumor {
		return fmt.Errorf("gossip: rumor of %d bytes is over the limit of %d", len(msg), MaxRumor)
	}
	n.mu.Lock()
	q := n.rumors
	n.mu.Unlock()
	if q == nil {
		return fmt.Errorf("gossip: not running")
	}
	q.QueueBroadcast(rumor{topic: topic, msg: msg})
	return nil
}

// rumor is a broadcast that replaces older ones on its topic.
type rumor struct {
	topic string
	msg   []byte
}

func (r rumor) Name() string { return r.topic }
func (r rumor) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(memberlist.NamedBroadcast)
	return ok && o.Name() == r.topic
}
func (r rumor) Message() []byte { return r.msg }
func (r rumor) Finished()       {}

// NumPeers counts the other live members without listing them.
func (n *Node) NumPeers() int { return int(n.members.Load()) }

// AnyPeer names a live member at random, "" when there is none, without
// listing them all.
func (n *Node) AnyPeer() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.peers) == 0 {
		return ""
	}
	i := rand.IntN(len(n.peers))
	for name := range n.peers {
		if i == 0 {
			return name
		}
		i--
	}
	return ""
}

// Lists tells whether name is a live member this node knows, without
// listing them all: a member that answers requests answers only those.
func (n *Node) Lists(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.peers[name]
	return ok
}

// Peers lists the other live members.
func (n *Node) Peers() []Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Peer, 0, len(n.peers))
	for _, p := range n.peers {
		out = append(out, p)
	}
	return out
}

// events keeps Node.peers; memberlist calls it with the node's fields stable.
type events struct{ n *Node }

func (e events) NotifyJoin(m *memberlist.Node)   { e.set(m) }
func (e events) NotifyUpdate(m *memberlist.Node) { e.set(m) }
func (e events) NotifyLeave(m *memberlist.Node) {
	// What was verified of it is forgotten only once it stays gone
	// (forgetGone): memberlist takes a "dead" from anyone with the office
	// key, and a member forgotten at once would have its older
	// announcements taken back before its refutation comes.
	e.n.mu.Lock()
	delete(e.n.peers, m.Name)
	e.n.members.Store(int32(len(e.n.peers)))
	// memberlist does not tell a peer that died from one that left (the
	// Node it hands over has no state): both are tried again. One that
	// left for good refuses the connection; one that comes back is back.
	if len(e.n.failed) >= maxFailed {
		// The oldest goes: in a large office laptops leave every day, and
		// the newest failures are the likeliest to come back.
		oldest := ""
		for name, f := range e.n.failed {
			if oldest == "" || f.since.Before(e.n.failed[oldest].since) {
				oldest = name
			}
		}
		delete(e.n.failed, oldest)
		// Gone longest: forgotten as forgetGone would (it no longer can).
		e.n.verify.forget(oldest)
	}
	e.n.failed[m.Name] = failedPeer{addr: m.Address(), since: time.Now()}
	e.n.mu.Unlock()
}

func (e events) set(m *memberlist.Node) {
	if m.Name == e.n.cfg.Name {
		return
	}
	p := Peer{Name: m.Name, Addr: m.Address(), ip: append(net.IP(nil), m.Addr...), port: m.Port}
	// Checked already (alive), and remembered: this is a lookup.
	meta, err := e.n.verify.verify(m.Name, m.Addr, m.Port, m.Meta)
	if err != nil {
		e.n.log.Debug("peer's announcement does not verify", "peer", m.Name, "err", err)
		return
	}
	p.Meta = meta
	e.n.mu.Lock()
	e.n.peers[m.Name] = p
	e.n.members.Store(int32(len(e.n.peers)))
	delete(e.n.failed, m.Name)
	e.n.mu.Unlock()
	if h := e.n.cfg.Handler; h != nil {
		h.PeerChanged(p)
	}
}

// SendTo delivers msg to the member named to at addr (host:port), whether
// or not this node lists it as alive.
func (n *Node) SendTo(to, addr string, msg []byte) error {
	return n.deliver(to, addr, msg, len(msg) <= MaxPacketMessage)
}

// Send delivers msg to the peer named to over the office's encrypted
// stream transport.
func (n *Node) Send(to string, msg []byte) error {
	return n.deliver(to, "", msg, false)
}

// Tell delivers msg to the member named to — where this node lists it, or
// at addr (host:port) for a member it does not list yet — as one encrypted gossip
// packet when it is small (at most MaxPacketMessage bytes), else over the
// stream transport. A packet costs a send and a receive; a stream costs a
// connection set up, read under a deadline and torn down on both sides,
// several times the CPU, which in an office's rollout is paid by every
// member. A packet can be lost: Tell is for messages whose sender asks
// again or sends again when nothing comes of them.
func (n *Node) Tell(to, addr string, msg []byte) error {
	return n.deliver(to, addr, msg, len(msg) <= MaxPacketMessage)
}

// MaxPacketMessage is the largest message Tell sends as a packet: with
// the packet's header, label and encryption it stays well within
// memberlist's 1,400-byte datagrams, so it is not fragmented on an
// office's network.
const MaxPacketMessage = 1200

func (n *Node) deliver(to, addr string, msg []byte, packet bool) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("gossip: message of %d bytes is over the limit", len(msg))
	}
	var target *memberlist.Node
	n.mu.Lock()
	ml := n.ml
	// A member this node knows is answered where memberlist knows it,
	// whatever address its message gave: a member cannot point answers
	// at another host. addr serves one that joined too recently to be
	// known.
	if p, ok := n.peers[to]; ok {
		// A copy: memberlist changes the *Node values it owns under its lock.
		target = &memberlist.Node{Name: p.Name, Addr: p.ip, Port: p.port}
	}
	n.mu.Unlock()
	if target == nil && addr != "" {
		host, port, err := splitHostPort(addr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || port == 0 {
			return fmt.Errorf("gossip: %q is not an address to answer", addr)
		}
		target = &memberlist.Node{Name: to, Addr: ip, Port: uint16(port)}
	}
	switch {
	case ml == nil:
		return fmt.Errorf("gossip: not running")
	case target == nil:
		return fmt.Errorf("gossip: no live member %s", to)
	case packet:
		return ml.SendBestEffort(target, msg)
	default:
		return ml.SendReliable(target, msg)
	}
}

type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	d.n.seq = max(uint64(time.Now().UnixMilli()), d.n.seq+1)
	b := signMeta(d.n.cfg.Signer, d.n.cfg.Name, d.n.selfIP, d.n.selfPort, d.n.seq, d.n.meta, d.n.pass)
	if len(b) > limit {
		d.n.log.Error("announcement over memberlist's limit", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// alive is asked by memberlist about every announcement of a member
// before it takes it: one that does not verify is dropped, so that a
// member without a pass is listed by nobody.
type alive struct{ n *Node }

func (a alive) NotifyAlive(m *memberlist.Node) error {
	if m.Name == a.n.cfg.Name {
		return nil // this member's own; memberlist refutes a false one
	}
	if _, err := a.n.verify.verify(m.Name, m.Addr, m.Port, m.Meta); err != nil {
		return fmt.Errorf("member %.64q at %s: %w", m.Name, m.Address(), err)
	}
	return nil
}
func (d delegate) NotifyMsg(b []byte) {
	if h := d.n.cfg.Handler; h != nil && len(b) > 0 && len(b) <= MaxMessage {
		// memberlist reuses the buffer after we return.
		h.Message(append([]byte(nil), b...))
	}
}
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	d.n.mu.Lock()
	q := d.n.rumors
	d.n.mu.Unlock()
	if q == nil {
		return nil
	}
	return q.GetBroadcasts(overhead, limit)
}
func (delegate) LocalState(join bool) []byte            { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool) {}
