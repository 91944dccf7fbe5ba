package agent

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/wire"
)

// peerPolicy spreads signed policy inside an office. A member that takes a
// new revision tells the whole office by a gossip rumor (with the policy
// when it is small) and hands the policy straight to a few peers; a member
// that hears of a newer revision asks the one that told it. Whatever comes
// from a peer is verified exactly as if the coordinator had sent it. So a
// rollout costs the coordinator a few pushes per office, and an office cut
// off from the coordinator still converges on the newest revision any
// member holds.
type peerPolicy struct {
	a *Agent

	mu     sync.Mutex
	asked  map[string]time.Time // "office/revision" → when last asked
	saving bool                 // a write of the known peers is due
	// known is the newest revision of this office's policy each peer is
	// known to hold (from its rumors and requests): the policy is pushed
	// to peers not known to hold it, and asked of peers known to hold a
	// newer one until it comes.
	known map[string]holding
	// taking is the revision being verified off memberlist's goroutine:
	// the same rumor arriving again meanwhile is not verified twice.
	taking uint64

	// policyAnswers and revocationAnswers pace this member's answers to
	// its office's requests (answerLimit).
	policyAnswers, revocationAnswers *answerLimit

	received *prometheus.CounterVec
}

func newPeerPolicy(a *Agent, reg prometheus.Registerer) (*peerPolicy, error) {
	p := &peerPolicy{a: a, asked: map[string]time.Time{}, known: map[string]holding{},
		policyAnswers: newAnswerLimit(), revocationAnswers: newAnswerLimit(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_peer_policies_total",
			Help: "Signed policies received from office peers, by result (accepted, stale, own: this agent takes its own from the coordinator, rejected)."}, []string{"result"}),
	}
	return p, reg.Register(p.received)
}

// antiEntropyAskers is about how many members of an office ask a random
// peer for anything newer each tick: every member in a small office, a
// share of them in a large one, so the office's cost stays flat.
const antiEntropyAskers = 16

// run re-checks the office now and then: a rumor can miss a member (it was
// away, or a packet was lost), and a request or its answer can be lost.
func (p *peerPolicy) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.mu.Lock()
			for k, at := range p.asked {
				if time.Since(at) > time.Minute {
					delete(p.asked, k)
				}
			}
			p.mu.Unlock()
			// The host may have woken up on another network: a member
			// that starts its gossip again is alone, and rejoins below.
			p.a.gossip.follow()
			p.askHolder()
			n := p.a.gossip.numPeers()
			if n == 0 {
				go p.a.rejoin()
				continue
			}
			// Anti-entropy: ask one peer at random; it answers only when it
			// holds something newer.
			if n <= antiEntropyAskers || rand.IntN(n) < antiEntropyAskers {
				if peer := p.askAny(); peer != "" {
					p.a.askRevocations(peer)
				}
			}
		}
	}
}

// PeerChanged implements gossip.Handler.
func (p *peerPolicy) PeerChanged(peer gossip.Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.saving {
		p.saving = true
		// Off memberlist's goroutine (it must not wait for the disk), and
		// once for a burst of changes.
		time.AfterFunc(200*time.Millisecond, func() {
			p.mu.Lock()
			p.saving = false
			p.mu.Unlock()
			p.a.savePeers()
		})
	}
}

// holding is what a peer is known to hold, and where to ask it. A
// revision is a number within one office: it is known of the office it
// was heard in, and says nothing once this member is in another.
type holding struct {
	office string
	rev    uint64
	addr   string
}

// holds notes that peer (at addr, if known) holds revision rev of the
// policy of office, this member's. Both are the sender's word: peer is
// shaped like a member id (Message drops any other), and an address that
// is not one (validAddr) is not kept.
func (p *peerPolicy) holds(office, peer, addr string, rev uint64) {
	addr = validAddr(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.known) > maxOfficeKnown {
		clear(p.known) // bounded; only a hint
	}
	h := p.known[peer]
	if h.office != office {
		h = holding{office: office}
	}
	if rev > h.rev {
		p.known[peer] = holding{office: office, rev: rev, addr: cmp.Or(addr, h.addr)}
	}
}

// askHolder asks a peer known to hold a newer revision than this member
// for it: a rumor is heard only a few times, and a request or its answer
// can be lost.
func (p *peerPolicy) askHolder() {
	office, roaming := p.a.Office()
	if roaming {
		return
	}
	have := p.a.state.RevisionIn(office)
	var peer string
	var best holding
	p.mu.Lock()
	for name, h := range p.known {
		if h.office != office {
			// Heard of in an office this member has left: no use here,
			// and kept it would be kept for good.
			delete(p.known, name)
			continue
		}
		if h.rev > have && h.rev > best.rev {
			peer, best = name, h
		}
	}
	p.mu.Unlock()
	if peer != "" {
		p.want(peer, best.addr, best.rev)
	}
}

// maxOfficeKnown is about the largest office a member keeps hints for.
const maxOfficeKnown = 4096

// want asks peer (at addr, if it is not listed) for revision rev of the
// office's policy, unless it is held or was asked for just now.
func (p *peerPolicy) want(peer, addr string, rev uint64) {
	office, roaming := p.a.Office()
	if roaming || rev <= p.a.state.RevisionIn(office) {
		return
	}
	key := office + "/" + itoa(rev)
	p.mu.Lock()
	// Many peers tell of the same revision at once: ask one at a time,
	// and again only if nothing came of it.
	if t, ok := p.asked[key]; ok && time.Since(t) < 3*time.Second {
		p.mu.Unlock()
		return
	}
	p.asked[key] = time.Now()
	p.mu.Unlock()
	p.ask(peer, addr)
}

// askAny asks one office peer at random for its policy, if it is newer
// than the one held, and names the peer ("" when there is none).
func (p *peerPolicy) askAny() string {
	peer := p.a.gossip.anyPeer()
	if peer != "" {
		p.ask(peer, "")
	}
	return peer
}

// ask asks a peer (at addr, or by its name when addr is empty) for its
// policy if it is newer than the one held.
func (p *peerPolicy) ask(peer, addr string) {
	office, roaming := p.a.Office()
	if roaming {
		return
	}
	req := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_PolicyRequest{
		PolicyRequest: &wire.PeerPolicyRequest{Office: office, HaveRevision: p.a.state.RevisionIn(office), ReplyTo: p.a.gossip.addr()}}}
	go p.tell(peer, addr, req)
}

// tell hands m to an office peer — at addr, or where gossip lists it when
// addr is empty — as one gossip packet when it is small (gossip.Node.Tell).
// Every message sent this way is asked for again or sent again when it is
// lost: policy and revocation requests and answers, pushes that back up a
// rumor, roll-up acknowledgements.
func (p *peerPolicy) tell(to, addr string, m *wire.PeerMessage) {
	b, err := proto.Marshal(m)
	if err == nil {
		err = p.a.gossip.tell(to, addr, b)
	}
	if err != nil {
		p.a.log.Debug("message to office peer", "peer", to, "addr", addr, "err", err)
	}
}

// Message implements gossip.Handler.
func (p *peerPolicy) Message(b []byte) {
	var m wire.PeerMessage
	if err := wire.Unmarshal(b, &m); err != nil {
		p.a.log.Warn("undecodable message from an office peer", "err", err)
		return
	}
	// Every name a message gives is its sender's word, and a message may
	// be megabytes: one whose sender does not go by a member id is from
	// no member, and its name would be kept and reported.
	if !memberShaped(m.GetFrom()) {
		p.a.log.Debug("message from an office peer without a member id: dropped", "from", clipName(m.GetFrom()))
		return
	}
	switch body := m.GetBody().(type) {
	case *wire.PeerMessage_RevisionRumor:
		p.rumor(m.GetFrom(), body.RevisionRumor)
	case *wire.PeerMessage_PolicyRequest:
		p.answer(m.GetFrom(), body.PolicyRequest)
	case *wire.PeerMessage_Policy:
		p.take(m.GetFrom(), body.Policy, 0)
	case *wire.PeerMessage_RevocationsRequest:
		p.a.answerRevocations(m.GetFrom(), body.RevocationsRequest)
	case *wire.PeerMessage_Revocations:
		// Verified off the packet reader's goroutine: probes wait behind it.
		go p.a.takeRevocations(body.Revocations, m.GetFrom())
	case *wire.PeerMessage_RollupReport:
		p.a.rollup.take(m.GetFrom(), body.RollupReport)
	case *wire.PeerMessage_RollupAck:
		go p.a.rollup.acked(body.RollupAck) // it writes to disk: off memberlist's goroutine
	}
}

// answer hands this member's policy to a member that asks for it and
// holds an older one. A request costs its sender a small packet and the
// answer a whole signed policy, so it goes only to a member gossip lists,
// at the address gossip knows (never to one the request names: that
// would point a stream of policies at any host), and only a few times a
// while to each member and to the office (answerLimit). A member whose
// answer is lost asks again.
func (p *peerPolicy) answer(from string, req *wire.PeerPolicyRequest) {
	office, _ := p.a.Office()
	if req.GetOffice() != office {
		return
	}
	p.holds(office, from, req.GetReplyTo(), req.GetHaveRevision())
	// A policy of this agent's own is not shareable: the asker gets
	// the office's from another peer or the coordinator.
	sp := p.a.state.Shareable()
	if sp == nil || p.a.state.RevisionIn(office) <= req.GetHaveRevision() || !p.a.gossip.lists(from) {
		return
	}
	if !p.policyAnswers.allow(from) {
		p.a.log.Debug("policy request from an office peer left unanswered: asked too often", "peer", from)
		return
	}
	answer := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_Policy{Policy: sp}}
	go p.tell(from, "", answer)
}

// rumor takes what a peer tells the office of a revision it holds.
func (p *peerPolicy) rumor(from string, r *wire.RevisionRumor) {
	office, roaming := p.a.Office()
	if roaming || r.GetOffice() != office {
		return
	}
	p.holds(office, from, r.GetHolderAddr(), r.GetRevision())
	if r.GetRevision() <= p.a.state.RevisionIn(office) {
		return
	}
	if r.GetPolicy() == nil {
		p.want(from, validAddr(r.GetHolderAddr()), r.GetRevision())
		return
	}
	p.take(from, r.GetPolicy(), r.GetRevision())
}

// take verifies and keeps a policy a peer handed over (in a rumor, which
// says its revision, or on its own: rev 0), off memberlist's goroutines —
// they read the office's packets, probes among them — and once while the
// same revision arrives again.
func (p *peerPolicy) take(from string, sp *wire.SignedPolicy, rev uint64) {
	p.mu.Lock()
	if rev > 0 && p.taking >= rev {
		p.mu.Unlock()
		return
	}
	if rev > p.taking {
		p.taking = rev
	}
	p.mu.Unlock()
	go func() {
		p.accept(from, sp)
		if rev > 0 {
			p.mu.Lock()
			if p.taking == rev {
				p.taking = 0
			}
			p.mu.Unlock()
		}
	}()
}

// rumorPolicyBytes is the largest signed policy that rides in a rumor:
// with memberlist's own messages it must fit in one gossip packet.
const rumorPolicyBytes = 800

// spread tells the office of a newly accepted policy: a rumor to every
// member by gossip, carrying the policy when it is small, and the policy
// itself straight to peers not known to hold it — one when the rumor
// carries it, a few when it does not (each of those hops
// costs one connection, not a gossip round), an epidemic push that
// reaches most of an office in a few hops.
func (p *peerPolicy) spread(sp *wire.SignedPolicy, rev uint64) {
	office, _ := p.a.Office()
	r := &wire.RevisionRumor{Office: office, Revision: rev, HolderAddr: p.a.gossip.addr()}
	if proto.Size(sp) <= rumorPolicyBytes {
		r.Policy = sp
	}
	b, err := proto.Marshal(&wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_RevisionRumor{RevisionRumor: r}})
	if err == nil {
		err = p.a.gossip.rumor("revision", b)
	}
	if err != nil {
		p.a.log.Debug("tell the office of a revision", "revision", rev, "err", err)
	}
	var behind []gossip.Peer
	p.mu.Lock()
	for _, peer := range p.a.gossip.peers() {
		if k := p.known[peer.Name]; peer.Meta.Role == "agent" && (k.office != office || k.rev < rev) {
			behind = append(behind, peer)
		}
	}
	p.mu.Unlock()
	rand.Shuffle(len(behind), func(i, j int) { behind[i], behind[j] = behind[j], behind[i] })
	m := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_Policy{Policy: sp}}
	fanout := spreadFanout
	if r.Policy != nil {
		// The rumor carries the policy to every member already; one push
		// keeps a chain going that no lost packet stops. Three from every
		// member were a TCP connection, a decryption and a signature check
		// each, mostly of a policy the receiver already held: in twenty
		// offices rolling out at once that CPU was the whole machine's.
		fanout = 1
	}
	for _, peer := range behind[:min(fanout, len(behind))] {
		p.holds(office, peer.Name, "", rev) // it will: not pushed to again
		go p.tell(peer.Name, "", m)
	}
}

// spreadFanout is how many peers a member hands a new policy to when it is
// too large to ride in the rumor.
const spreadFanout = 3

func (p *peerPolicy) accept(from string, sp *wire.SignedPolicy) {
	office, _ := p.a.Office()
	pol, err := p.a.state.Accept(sp, office, p.a.id.ID)
	var own *state.OwnPolicyError
	switch {
	case errors.Is(err, state.ErrStale):
		p.received.WithLabelValues("stale").Inc()
		return
	case errors.As(err, &own):
		// The office's policy says this agent has one of its own at that
		// revision: nothing wrong with the peer; ask the coordinator.
		p.received.WithLabelValues("own").Inc()
		p.a.notice(own.Revision)
		p.a.trigger()
		return
	case err != nil:
		// A peer that hands out policy that does not verify is either
		// broken or hostile: say so loudly and tell the coordinator.
		p.received.WithLabelValues("rejected").Inc()
		p.a.log.Warn("refused a policy from an office peer", "peer", from, "err", err)
		p.a.reportPeer(claimed(from), "sent a policy that was refused", err.Error())
		return
	}
	p.received.WithLabelValues("accepted").Inc()
	p.a.policyAccepted(pol, "peer "+from)
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// memberShaped tells whether s could be a member id.
func memberShaped(s string) bool { return wire.MemberIDShaped(s) }

// maxPeerAddr bounds a gossip address a peer message may give
// ("[v6 address]:port" is at most 47 bytes).
const maxPeerAddr = 64

// validAddr is addr if it is an IP address and port, as gossip answers
// at, else "".
func validAddr(addr string) string {
	if addr == "" || len(addr) > maxPeerAddr {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) == nil {
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return ""
	}
	return addr
}

// claimed names the sender of a peer message as it names itself: nothing
// proves a message's From, so a report must not say that member did it.
func claimed(from string) string { return "a member calling itself " + from }

// clipName is a name for a log line, whatever its size.
func clipName(s string) string {
	if len(s) > wire.MaxMemberID {
		return s[:wire.MaxMemberID] + "…"
	}
	return s
}

// answerLimit paces the answers to office peers' requests (for a policy,
// for a revocation list): at most answerBurst to one member at once and
// one per answerEvery after that, and at most officeAnswersPerSec
// (officeAnswerBurst at once) to the whole office. A member asks again
// only when its answer was lost, a few seconds later; a member asked
// without end by a peer (or by anyone with the office key, speaking for
// its members) answers a few times a while, not every time.
type answerLimit struct {
	mu    sync.Mutex
	total *rate.Limiter
	each  map[string]*rate.Limiter
}

const (
	answerEvery         = 3 * time.Second
	answerBurst         = 2
	officeAnswersPerSec = 50
	officeAnswerBurst   = 100
)

func newAnswerLimit() *answerLimit {
	return &answerLimit{total: rate.NewLimiter(officeAnswersPerSec, officeAnswerBurst), each: map[string]*rate.Limiter{}}
}

// allow tells whether an answer to member may go now, and counts it.
func (l *answerLimit) allow(member string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.each[member]
	if e == nil {
		if len(l.each) >= maxOfficeKnown {
			clear(l.each) // only members gossip lists get here
		}
		e = rate.NewLimiter(rate.Every(answerEvery), answerBurst)
		l.each[member] = e
	}
	return e.Allow() && l.total.Allow()
}
