package quicsrv

import (
	"bytes"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

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
			Help: "Members' check-ins carried by a roll-up member, by result (kept, or why refused: signature, stale, duplicate, unknown, office, bad_request, error)."},
			[]string{"result"}),
	}
}

// rollup keeps the check-ins carrier brings and returns a signed answer
// for each one kept.
func (s *Server) rollup(carrier *store.Member, o *store.Office, batch []*wire.SignedCheckin, offices []store.Office, now time.Time) []*wire.SignedRollupAck {
	s.m.rollup.batches.Inc()
	// What a member of this office should hold; one that holds something
	// else is asked to check in directly.
	var want officeWant
	if base, err := s.baseInfo(o); err == nil {
		s.memberInfo(base, o, &store.Member{Role: "agent"})
		want.digest = wire.OfficeDigest(base)
	}
	want.revision = s.missedRevision(o, now)
	batch, dups := newestOfEach(batch)
	if dups > 0 {
		s.m.rollup.reports.WithLabelValues("duplicate").Add(float64(dups))
		s.log.Warn("rolled-up check-ins refused: more than one of a member in one batch", "carrier", carrier.ID, "office", o.Name, "refused", dups)
	}
	acks := make([]*wire.SignedRollupAck, len(batch))
	results := make([]string, len(batch))
	sem := make(chan struct{}, rollupWorkers)
	var wg sync.WaitGroup
	for i, sc := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ack, result := s.rolledUp(carrier, o, sc, offices, want, now)
			s.m.rollup.reports.WithLabelValues(result).Inc()
			acks[i], results[i] = ack, result
		}()
	}
	wg.Wait()
	// Told once a batch, each one's reason at debug level: a batch of
	// thousands of empty check-ins costs its carrier a few bytes each.
	refused := map[string]int{}
	for _, r := range results {
		if r != "kept" && r != "error" {
			refused[r]++
		}
	}
	if len(refused) > 0 {
		s.log.Warn("rolled-up check-ins refused", "carrier", carrier.ID, "office", o.Name, "refused", refused)
	}
	out := acks[:0]
	for _, a := range acks {
		if a != nil {
			out = append(out, a)
		}
	}
	return out
}

// officeWant is what a member of an office should hold: the office
// information it would get at a direct check-in (its digest), and the
// revision any member still behind missed (0: none).
type officeWant struct {
	digest   []byte
	revision uint64
}

// missedRevision is the revision of office o that its agents were told
// of more than two check-in intervals ago, 0 if none: a member whose
// rolled-up check-in is still behind it missed the news (its peers could
// not hand the policy over: each holds a policy of its own, say), and is
// asked to check in directly, which tells it. Members behind a newer
// revision are not: they hear of it from their office within seconds,
// and asking them all would be the burst of check-ins the roll-up spares
// the coordinator.
func (s *Server) missedRevision(o *store.Office, now time.Time) uint64 {
	p, err := s.store.Policy(o.Name)
	if err != nil {
		return 0
	}
	rev, since := p.Revision, p.Applied
	if distribution(o) {
		rel, err := s.store.Released(o.Name)
		if err != nil {
			return 0
		}
		rev, since = min(rel.Revision, rev), rel.At
	}
	if now.Sub(since) <= 2*o.CheckinInterval {
		return 0
	}
	return rev
}

func (s *Server) rolledUp(carrier *store.Member, o *store.Office, sc *wire.SignedCheckin, offices []store.Office, want officeWant, now time.Time) (*wire.SignedRollupAck, string) {
	refuse := func(result, why string, member string) (*wire.SignedRollupAck, string) {
		s.log.Debug("rolled-up check-in refused", "carrier", carrier.ID, "office", o.Name, "member", member, "reason", why)
		return nil, result
	}
	if len(sc.GetReport()) > wire.MaxCarriedCheckin {
		return refuse("bad_request", "too large", "")
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
	signed := time.Unix(rep.GetSignedUnix(), 0)
	m, err = s.record(id, "", signed, req, offices, now)
	var stale *staleError
	if errors.As(err, &stale) {
		// No answer: an acknowledgement would tell the member its runs
		// are kept. Its newer check-ins, and its direct ones, are.
		return refuse("stale", stale.why+" (signed at "+signed.UTC().Format(time.RFC3339)+")", id)
	}
	if err != nil {
		s.log.Error("rolled-up check-in", "member", id, "err", err)
		return nil, "error"
	}
	ack := &wire.RollupAck{MemberId: id, AckedSeq: m.AckedSeq, AtUnix: now.Unix(),
		// Keys that change, another office, other settings, a member
		// pass, a revision it missed: only a direct check-in brings those.
		CheckinDirectly: o.Rotation != "" || m.Office != o.Name || m.Roaming || !bytes.Equal(req.GetOfficeDigest(), want.digest) ||
			len(req.GetGossipKey()) > 0 || req.GetRevision() < want.revision || s.caBehind(req),
	}
	answer, err := wire.SignRollupAck(s.ca.PolicyKey(), ack)
	if err != nil {
		s.log.Error("sign roll-up ack", "member", id, "err", err)
		return nil, "error"
	}
	return answer, "kept"
}

// directSkew is how long before a member's last direct check-in arrived a
// rolled-up check-in of it may have been signed and still be kept. The
// two are timed by different clocks (the arrival by the coordinator's,
// the signature by the member's), so a check-in signed just after a
// direct one can read as signed a little before it; the coordinator
// already refuses signatures more than a minute in its future, so it
// counts on members' clocks within about a minute. A member whose clock
// is further behind has its rolled-up check-ins refused for a while after
// each direct one; unacknowledged, it checks in directly again, so
// nothing of it is lost.
const directSkew = time.Minute

// staleError refuses a rolled-up check-in older than what was kept.
type staleError struct{ why string }

func (e *staleError) Error() string { return "rolled-up check-in " + e.why }

// notNewer says why a rolled-up check-in of m signed at signed is not
// newer than what was kept of m ("" when it is). A carrier, or anyone
// holding the office key who saw the member's check-ins go by, can bring
// an older one within the 10 minutes a signature counts: kept, it would
// put back the member's older report, revision and addresses. Signed
// times are compared with signed times (one clock, the member's), and
// with the last direct check-in only within directSkew.
func notNewer(m *store.Member, signed time.Time, req *wire.CheckinRequest) string {
	if !m.DirectAt.IsZero() && signed.Before(m.DirectAt.Add(-directSkew)) {
		return "signed before the member's last direct check-in"
	}
	seq, kept := req.GetReport().GetSeq(), uint64(0)
	if m.Report != nil {
		kept = m.Report.Seq
	}
	if seq > 0 && seq < kept {
		return "carries an older run than the one kept"
	}
	switch last := m.RolledUpSigned; {
	case last.IsZero() || signed.After(last):
		return ""
	case signed.Before(last):
		return "signed before the last one kept"
	case seq > kept || seq == kept && req.GetRevision() > m.Revision:
		// Signatures count in seconds: two check-ins of one second
		// differ by the run or revision they tell of.
		return ""
	}
	return "the same as the last one kept"
}

// newestOfEach keeps one check-in per member from a batch, the one signed
// last, and counts the others. A carrier keeps the newest of each member,
// so more than one is a replay: each copy would cost a signature check,
// a write and a signed answer. Members and times are read before the
// signature is checked; the check-in kept is then verified like any
// other, and one a carrier forged to push a genuine one out is refused —
// but a carrier can leave any check-in out anyway.
func newestOfEach(batch []*wire.SignedCheckin) ([]*wire.SignedCheckin, int) {
	type newest struct {
		i      int
		signed int64
	}
	byMember := make(map[string]newest, len(batch))
	keep := make([]bool, len(batch))
	for i, sc := range batch {
		id, signed, ok := claimed(sc.GetReport())
		if !ok {
			keep[i] = true // refused when verified
			continue
		}
		if n, seen := byMember[id]; seen {
			if signed <= n.signed {
				continue
			}
			keep[n.i] = false
		}
		byMember[id] = newest{i: i, signed: signed}
		keep[i] = true
	}
	out := make([]*wire.SignedCheckin, 0, len(batch))
	for i, sc := range batch {
		if keep[i] {
			out = append(out, sc)
		}
	}
	return out, len(batch) - len(out)
}

// claimed reads the member id and signing time a serialized RollupReport
// says, without decoding the check-in it carries.
func claimed(report []byte) (id string, signed int64, ok bool) {
	for len(report) > 0 {
		num, typ, n := protowire.ConsumeTag(report)
		if n < 0 {
			return "", 0, false
		}
		report = report[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(report)
			if n < 0 {
				return "", 0, false
			}
			id, report = string(v), report[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(report)
			if n < 0 {
				return "", 0, false
			}
			signed, report = int64(v), report[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, report)
			if n < 0 {
				return "", 0, false
			}
			report = report[n:]
		}
	}
	return id, signed, id != ""
}
