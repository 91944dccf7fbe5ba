package quicsrv

import (
	"bytes"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// The roll-up: one member of an office (the carrier) brings the office's
// check-ins with its own, each signed by the member it is from. Each is
// kept exactly as if that member had checked in itself, once its
// signature verifies against a certificate this CA issued, it is recent,
// and its member is an agent of the carrier's office — a member cannot
// speak for another member, nor for any member of another office.

const (
	// maxRollup bounds the check-ins one batch carries.
	maxRollup = 5000
	// rollupMaxAge is how old a signed check-in may be (replay).
	rollupMaxAge = 10 * time.Minute
	// rollupWorkers record a batch's check-ins side by side, so that the
	// store commits them in a few transactions, not one each.
	rollupWorkers = 32
	// maxRememberedCerts is how many member certificates the check-in
	// verifier remembers (about 200 bytes each).
	maxRememberedCerts = 1 << 16
)

type rollupMetrics struct {
	batches prometheus.Counter
	reports *prometheus.CounterVec
}

func newRollupMetrics() rollupMetrics {
	return rollupMetrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_coordinator_rollup_batches_total", Help: "Check-ins that carried other members' check-ins (roll-up)."}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_coordinator_rollup_reports_total",
			Help: "Members' check-ins carried by a roll-up member, by result (kept, or why refused: signature, stale, unknown, office, bad_request, error)."},
			[]string{"result"}),
	}
}

// rollup keeps the check-ins carrier brings and returns a signed answer
// for each one kept.
func (s *Server) rollup(carrier *store.Member, o *store.Office, batch []*wire.SignedCheckin, offices []store.Office, now time.Time) []*wire.SignedRollupAck {
	s.m.rollup.batches.Inc()
	// What a member of this office should hold; one that holds something
	// else is asked to check in directly.
	var want []byte
	if base, err := s.baseInfo(o); err == nil {
		s.memberInfo(base, o, &store.Member{Role: "agent"})
		want = wire.OfficeDigest(base)
	}
	acks := make([]*wire.SignedRollupAck, len(batch))
	sem := make(chan struct{}, rollupWorkers)
	var wg sync.WaitGroup
	for i, sc := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ack, result := s.rolledUp(carrier, o, sc, offices, want, now)
			s.m.rollup.reports.WithLabelValues(result).Inc()
			acks[i] = ack
		}()
	}
	wg.Wait()
	out := acks[:0]
	for _, a := range acks {
		if a != nil {
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) rolledUp(carrier *store.Member, o *store.Office, sc *wire.SignedCheckin, offices []store.Office, want []byte, now time.Time) (*wire.SignedRollupAck, string) {
	refuse := func(result, why string, member string) (*wire.SignedRollupAck, string) {
		s.log.Warn("rolled-up check-in refused", "carrier", carrier.ID, "office", o.Name, "member", member, "reason", why)
		return nil, result
	}
	rep, err := s.checkins.Verify(sc, now)
	if err != nil {
		return refuse("signature", err.Error(), "")
	}
	id := rep.GetMemberId()
	if at := time.Unix(rep.GetSignedUnix(), 0); now.Sub(at) > rollupMaxAge || at.Sub(now) > time.Minute {
		return refuse("stale", "signed at "+at.UTC().Format(time.RFC3339), id)
	}
	req := rep.GetCheckin()
	if tooLarge(req) || len(req.GetRollup()) > 0 {
		return refuse("bad_request", "too large, or nested", id)
	}
	m, err := s.store.Member(id)
	if err != nil {
		return refuse("unknown", "not enrolled", id)
	}
	if m.Role != "agent" || m.Roaming || m.Office != carrier.Office || carrier.Roaming {
		return refuse("office", "member of office "+m.Office+", carried by a member of "+carrier.Office, id)
	}
	m, err = s.record(id, "", req, offices, now)
	if err != nil {
		s.log.Error("rolled-up check-in", "member", id, "err", err)
		return nil, "error"
	}
	ack := &wire.RollupAck{MemberId: id, AckedSeq: m.AckedSeq, AtUnix: now.Unix(),
		// Keys that change, another office, other settings: only a direct
		// check-in brings those.
		CheckinDirectly: o.Rotation != "" || m.Office != o.Name || m.Roaming || !bytes.Equal(req.GetOfficeDigest(), want),
	}
	signed, err := wire.SignRollupAck(s.ca.PolicyKey(), ack)
	if err != nil {
		s.log.Error("sign roll-up ack", "member", id, "err", err)
		return nil, "error"
	}
	return signed, "kept"
}
