package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/wire"
)

// peerPolicy spreads signed policy inside an office: a member that hears
// a peer announce a newer revision asks that peer for it, and verifies
// what comes back exactly as if the coordinator had sent it. So a rollout
// costs the coordinator a few pushes per office, and an office cut off
// from the coordinator still converges on the newest revision any member
// holds.
type peerPolicy struct {
	a *Agent

	mu     sync.Mutex
	asked  map[string]time.Time // "office/revision" → when last asked
	saving bool                 // a write of the known peers is due

	received *prometheus.CounterVec
}

func newPeerPolicy(a *Agent, reg prometheus.Registerer) (*peerPolicy, error) {
	p := &peerPolicy{a: a, asked: map[string]time.Time{},
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_peer_policies_total",
			Help: "Signed policies received from office peers, by result (accepted, stale, own: this agent takes its own from the coordinator, rejected)."}, []string{"result"}),
	}
	return p, reg.Register(p.received)
}

// run re-checks the office now and then: an announcement can arrive
// while the member is between gossip nodes, or a request or its answer can
// be lost, and memberlist announces a revision only once.
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
			peers := p.a.gossip.peers()
			for _, peer := range peers {
				p.consider(peer)
			}
			// Anti-entropy: announcements can be lost in a large office,
			// so each tick also asks one peer at random; it answers only
			// when it holds something newer.
			if len(peers) > 0 {
				peer := peers[rand.IntN(len(peers))].Name
				p.ask(peer)
				p.a.askRevocations(peer)
			}
		}
	}
}

// PeerChanged implements gossip.Handler.
func (p *peerPolicy) PeerChanged(peer gossip.Peer) {
	p.mu.Lock()
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
	p.mu.Unlock()
	p.consider(peer)
}

// consider asks peer for its policy if it holds a newer revision.
func (p *peerPolicy) consider(peer gossip.Peer) {
	if peer.Meta.Role != "agent" && peer.Meta.Role != "relay" {
		return
	}
	office, roaming := p.a.Office()
	if roaming {
		return
	}
	have := p.a.state.RevisionIn(office)
	if peer.Meta.Revision <= have {
		return
	}
	key := office + "/" + itoa(peer.Meta.Revision)
	p.mu.Lock()
	// Many peers announce the same revision at once: ask one at a time,
	// and again only if nothing came of it.
	if t, ok := p.asked[key]; ok && time.Since(t) < 3*time.Second {
		p.mu.Unlock()
		return
	}
	p.asked[key] = time.Now()
	p.mu.Unlock()
	p.ask(peer.Name)
}

// ask asks a peer for its policy if it is newer than the one held.
func (p *peerPolicy) ask(peer string) {
	office, roaming := p.a.Office()
	if roaming {
		return
	}
	req := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_PolicyRequest{
		PolicyRequest: &wire.PeerPolicyRequest{Office: office, HaveRevision: p.a.state.RevisionIn(office), ReplyTo: p.a.gossip.addr()}}}
	go p.send(peer, req)
}

func (p *peerPolicy) send(to string, m *wire.PeerMessage) {
	b, err := proto.Marshal(m)
	if err == nil {
		err = p.a.gossip.send(to, b)
	}
	if err != nil {
		p.a.log.Debug("message to office peer", "peer", to, "err", err)
	}
}

func (p *peerPolicy) sendTo(to, addr string, m *wire.PeerMessage) {
	b, err := proto.Marshal(m)
	if err == nil {
		err = p.a.gossip.sendTo(to, addr, b)
	}
	if err != nil {
		p.a.log.Debug("answer office peer", "peer", to, "addr", addr, "err", err)
	}
}

// Message implements gossip.Handler.
func (p *peerPolicy) Message(b []byte) {
	var m wire.PeerMessage
	if err := proto.Unmarshal(b, &m); err != nil {
		p.a.log.Warn("undecodable message from an office peer", "err", err)
		return
	}
	switch body := m.GetBody().(type) {
	case *wire.PeerMessage_PolicyRequest:
		// A policy of this agent's own is not shareable: the asker gets
		// the office's from another peer or the coordinator.
		sp := p.a.state.Shareable()
		office, _ := p.a.Office()
		if sp == nil || body.PolicyRequest.GetOffice() != office || p.a.state.RevisionIn(office) <= body.PolicyRequest.GetHaveRevision() {
			return
		}
		answer := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_Policy{Policy: sp}}
		if to := body.PolicyRequest.GetReplyTo(); to != "" {
			go p.sendTo(m.GetFrom(), to, answer)
		} else {
			go p.send(m.GetFrom(), answer)
		}
	case *wire.PeerMessage_Policy:
		p.accept(m.GetFrom(), body.Policy)
	case *wire.PeerMessage_RevocationsRequest:
		p.a.answerRevocations(m.GetFrom(), body.RevocationsRequest)
	case *wire.PeerMessage_Revocations:
		p.a.takeRevocations(body.Revocations, m.GetFrom())
	case *wire.PeerMessage_RollupReport:
		p.a.rollup.take(m.GetFrom(), body.RollupReport)
	case *wire.PeerMessage_RollupAck:
		go p.a.rollup.acked(body.RollupAck) // it writes to disk: off memberlist's goroutine
	}
}

// spread hands a newly accepted policy to a few peers that announce an
// older revision: an epidemic push, so that an office converges in a few
// rounds instead of waiting for each member to notice and ask.
func (p *peerPolicy) spread(sp *wire.SignedPolicy, rev uint64) {
	var behind []gossip.Peer
	for _, peer := range p.a.gossip.peers() {
		if peer.Meta.Role == "agent" && peer.Meta.Revision < rev {
			behind = append(behind, peer)
		}
	}
	rand.Shuffle(len(behind), func(i, j int) { behind[i], behind[j] = behind[j], behind[i] })
	m := &wire.PeerMessage{From: p.a.id.ID, Body: &wire.PeerMessage_Policy{Policy: sp}}
	for _, peer := range behind[:min(spreadFanout, len(behind))] {
		go p.send(peer.Name, m)
	}
}

// spreadFanout is how many peers a member hands a new policy to.
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
		p.a.reportPeer(from, "sent a policy that was refused: "+err.Error())
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
