package quicsrv

import (
	"errors"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// An office in mode distribution has its agents told of a revision only
// once its distribution server has staged every artifact the revision
// names. Until then agents see the last released revision at check-in, get
// its signed policy when they ask, and hear no push; relays see the newest,
// so that they stage it. Relays do not hand policy to agents over gossip,
// so nothing else carries an unreleased revision into the office.

// distribution says whether the office holds revisions back for staging.
func distribution(o *store.Office) bool { return o != nil && o.Mode == "distribution" }

// agentRevision is the revision an agent of office o may know of, newest
// being the office's newest.
func (s *Server) agentRevision(o *store.Office, newest uint64) uint64 {
	if !distribution(o) {
		return newest
	}
	rel, err := s.store.Released(o.Name)
	if err != nil {
		return 0
	}
	return min(rel.Revision, newest)
}

// agentPolicy is the policy agent m may take: p itself, or in a
// distribution office the released revision (its own variant of it, if it
// had one).
func (s *Server) agentPolicy(m *store.Member, p *store.Policy) (*store.Policy, error) {
	o, err := s.store.Office(m.Office)
	if err != nil || !distribution(o) {
		return p, nil
	}
	rel, err := s.store.Released(m.Office)
	if err != nil {
		return nil, err // ErrNotFound: nothing released yet
	}
	if rel.Revision >= p.Revision {
		return p, nil
	}
	return &store.Policy{Office: m.Office, Revision: rel.Revision, Signed: rel.For(m.ID), Applied: rel.At}, nil
}

// holdBack keeps a new revision of a distribution office from its agents:
// only its relays are told, so that the distribution server stages it at
// once. It reports whether it held the revision back.
func (s *Server) holdBack(office string, revision uint64) bool {
	o, err := s.store.Office(office)
	if err != nil || !distribution(o) {
		return false
	}
	if rel, err := s.store.Released(office); err == nil && rel.Revision >= revision {
		return false
	}
	members, err := s.store.Members(office)
	if err != nil {
		return true
	}
	for _, m := range members {
		if m.Role == "relay" {
			s.NotifyMember(m.ID)
		}
	}
	s.log.Info("revision held back until the distribution server has staged it", "office", office, "revision", revision)
	return true
}

// maybeRelease tells a distribution office's agents of its newest revision
// once its distribution server reports it staged whole.
func (s *Server) maybeRelease(o *store.Office, m *store.Member) {
	if !distribution(o) || !o.IsDistributionServer(m.ServeURL) || !m.Staging.Complete() {
		return
	}
	released, err := s.store.Release(o.Name, m.Staging.Revision, time.Now())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("release staged revision", "office", o.Name, "err", err)
		}
		return
	}
	if !released {
		return
	}
	s.log.Info("distribution server staged the revision; telling the office's agents", "office", o.Name,
		"revision", m.Staging.Revision, "artifacts", m.Staging.Artifacts, "bytes", m.Staging.Bytes, "server", m.ID)
	s.NotifyRevision(o.Name, m.Staging.Revision)
}

func stagingFromWire(st *wire.StagingStatus, now time.Time) *store.Staging {
	return &store.Staging{Revision: st.GetRevision(), Artifacts: int(st.GetArtifacts()), Staged: int(st.GetStaged()),
		Bytes: st.GetBytes(), StagedBytes: st.GetStagedBytes(), Error: clip(st.GetError(), maxText), At: now}
}

// releasedNames says whether the released policy of m's distribution
// office (m's variant of it) names the artifact.
func (s *Server) releasedNames(m *store.Member, sha string) bool {
	rel, err := s.store.Released(m.Office)
	return err == nil && signedNames(rel.For(m.ID), sha)
}
