package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/outposthq/outpost/agent/internal/session"
	"github.com/outposthq/outpost/pkg/wire"
)

// Revocations travel like policy: the coordinator pushes its signed list
// to connected hosts, hosts hand a newer list to a few office peers (who
// hand it on), and every anti-entropy tick asks one peer whether it holds
// a newer one. A host that missed the push therefore learns it from its
// office even while the coordinator cannot reach it; a peer's list counts
// only if the coordinator's token key signed it.

// takeRevocations applies a signed list from the coordinator (from == "")
// or from the office peer from, and spreads it when it is newer.
func (a *Agent) takeRevocations(sr *wire.SignedRevocations, from string) {
	err := a.sessions.SetRevocations(sr)
	switch {
	case errors.Is(err, session.ErrStaleRevocations):
		return
	case errors.Is(err, wire.ErrRevocationsUnknownKey):
		// This host's policy does not name the key yet: not a forgery.
		a.log.Debug("revocation list signed by a key this host does not know yet", "from", from, "err", err)
		return
	case err != nil && from != "":
		a.log.Warn("refused a revocation list from an office peer", "peer", from, "err", err)
		a.reportPeer(claimed(from), "sent a revocation list that was refused", err.Error())
		return
	case err != nil:
		a.log.Warn("refused the coordinator's revocation list", "err", err)
		return
	}
	a.spreadRevocations(sr, from)
}

// spreadRevocations hands sr to a few office agents other than from.
func (a *Agent) spreadRevocations(sr *wire.SignedRevocations, from string) {
	if a.peers == nil {
		return
	}
	var to []string
	for _, p := range a.gossip.peers() {
		if p.Meta.Role == "agent" && p.Name != from {
			to = append(to, p.Name)
		}
	}
	rand.Shuffle(len(to), func(i, j int) { to[i], to[j] = to[j], to[i] })
	m := &wire.PeerMessage{From: a.id.ID, Body: &wire.PeerMessage_Revocations{Revocations: sr}}
	for _, name := range to[:min(spreadFanout, len(to))] {
		go a.peers.tell(name, "", m)
	}
}

// askRevocations asks peer for its list if it is newer than this host's.
func (a *Agent) askRevocations(peer string) {
	_, have := a.sessions.Revocations()
	go a.peers.tell(peer, "", &wire.PeerMessage{From: a.id.ID, Body: &wire.PeerMessage_RevocationsRequest{
		RevocationsRequest: &wire.RevocationsRequest{HaveIssuedUnixMs: have, ReplyTo: a.gossip.addr()}}})
}

// answerRevocations sends this host's list to a peer that holds an older
// one: like a policy (peerPolicy.answer), only to a member gossip lists,
// where gossip knows it, a few times a while.
func (a *Agent) answerRevocations(from string, req *wire.RevocationsRequest) {
	sr, issued := a.sessions.Revocations()
	if sr == nil || issued <= req.GetHaveIssuedUnixMs() || !a.gossip.lists(from) {
		return
	}
	if !a.peers.revocationAnswers.allow(from) {
		a.log.Debug("revocation request from an office peer left unanswered: asked too often", "peer", from)
		return
	}
	m := &wire.PeerMessage{From: a.id.ID, Body: &wire.PeerMessage_Revocations{Revocations: sr}}
	go a.peers.tell(from, "", m)
}

// refreshRevocations asks the coordinator for the current list before a
// direct session, so that a host that missed a push does not let a revoked
// technician in; without the coordinator it goes on with what it holds
// (pushed, or learned from its office).
//
// Streams are unauthenticated until their token verifies, and anyone who
// reaches session_listen may open hundreds: sessions opened together share
// one request, and one within revocationsFresh of the last answer asks
// nothing (a revocation is pushed too), so the coordinator is asked at most
// about once per revocationsFresh whatever the streams.
func (a *Agent) refreshRevocations(ctx context.Context) {
	if !a.link.Connected() {
		return
	}
	if at := a.revocationsAsked.Load(); at != nil && time.Since(*at) < revocationsFresh {
		return
	}
	a.revocationsAsk.Do("", func() (any, error) {
		if at := a.revocationsAsked.Load(); at != nil && time.Since(*at) < revocationsFresh {
			return nil, nil
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := a.link.Call(cctx, &wire.Request{Body: &wire.Request_RevocationsRequest{RevocationsRequest: &wire.RevocationsRequest{}}})
		if err != nil {
			a.log.Debug("ask the coordinator for revocations before a direct session", "err", err)
			return nil, nil
		}
		now := time.Now()
		a.revocationsAsked.Store(&now)
		a.takeRevocations(resp.GetRevocations(), "")
		return nil, nil
	})
}

// revocationsFresh is how long an answer to refreshRevocations stands for
// the direct sessions opened after it.
const revocationsFresh = 2 * time.Second
