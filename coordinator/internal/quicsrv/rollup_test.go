package quicsrv

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// rollupOffice is checkinServer with a second agent of berlin,
// carrier-1, that carries agent-1's check-ins, and a signer of agent-1's
// check-ins with a certificate the server's CA issued.
func rollupOffice(t *testing.T) (*Server, *store.Store, func(at time.Time, req *wire.CheckinRequest) *wire.SignedCheckin) {
	t.Helper()
	s, st, _ := checkinServer(t)
	now := time.Now()
	if err := st.CreateToken(store.Token{ID: "tok2", Hash: "hash2", Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll("hash2", now, func(_ store.Token, o store.Office) (store.Member, error) {
		return store.Member{ID: "carrier-1", Hostname: "pc-2", Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	key, der := memberCert(t, s, "agent-1")
	sign := func(at time.Time, req *wire.CheckinRequest) *wire.SignedCheckin {
		t.Helper()
		sc, err := wire.SignCheckin(key, der, "agent-1", at, req)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	return s, st, sign
}

func runReport(seq uint64, status wire.ItemReport_Status) *wire.CheckinRequest {
	return &wire.CheckinRequest{Hostname: "pc-1", Revision: 1, Report: &wire.Report{Revision: 1, Seq: seq, AtUnix: time.Now().Unix(),
		Items: []*wire.ItemReport{{Id: "vim", Kind: "package", Status: status}}}}
}

// The roll-up member (or any holder of the office key, who sees the
// members' signed check-ins go by) can hand the coordinator a member's
// older signed check-in after a newer one, within the 10 minutes a
// signature counts. Taken, it would put the member's state back: its
// last report (a failure it reported replaced by the success before it),
// its revision, its addresses, and it would look alive. A check-in signed
// before the last one kept of that member (directly or rolled up) is
// refused as stale, unacknowledged.
func TestRolledUpCheckinOlderThanTheLastKeptIsRefused(t *testing.T) {
	for name, newer := range map[string]func(s *Server, sign func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin){
		"rolled up": func(s *Server, sign func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin) {
			resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2",
				Rollup: []*wire.SignedCheckin{sign(time.Now().Add(-time.Minute), runReport(6, wire.ItemReport_STATUS_FAILED))}})
			if n := len(resp.GetCheckin().GetRollupAcks()); n != 1 {
				t.Fatalf("the newer check-in was not kept: %d acks, %v", n, resp.GetError())
			}
		},
		"direct": func(s *Server, _ func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin) {
			if err := s.checkin("agent-1", "192.0.2.10", runReport(6, wire.ItemReport_STATUS_FAILED)).AsError(); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, st, sign := rollupOffice(t)
			// agent-1's run 5 went well; it signed that check-in 2
			// minutes ago. Run 6, a minute ago, failed: kept.
			old := sign(time.Now().Add(-2*time.Minute), runReport(5, wire.ItemReport_STATUS_COMPLIANT))
			newer(s, sign)
			m, err := st.Member("agent-1")
			if err != nil {
				t.Fatal(err)
			}
			if m.Report.Seq != 6 {
				t.Fatalf("setup: report %d kept, want 6", m.Report.Seq)
			}
			// The carrier plays the older check-in back.
			resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: []*wire.SignedCheckin{old}})
			acks := len(resp.GetCheckin().GetRollupAcks())
			m, err = st.Member("agent-1")
			if err != nil {
				t.Fatal(err)
			}
			if acks != 0 || m.Report.Seq != 6 || m.Report.Items[0].Status != "failed" {
				t.Fatalf("a check-in signed before the last one kept was taken (%d acks): agent-1's report is now run %d, %q; want run 6, \"failed\" kept and the replay refused",
					acks, m.Report.Seq, m.Report.Items[0].Status)
			}
		})
	}
}

// An older check-in is refused by when it was signed, not only by the run
// it tells of: one that carries the same run as the newest kept, played
// back with the addresses the member had then, is refused too.
func TestRolledUpCheckinOfTheSameRunSignedBeforeTheLastKeptIsRefused(t *testing.T) {
	for name, newer := range map[string]func(s *Server, req *wire.CheckinRequest, sign func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin){
		"rolled up": func(s *Server, req *wire.CheckinRequest, sign func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin) {
			s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: []*wire.SignedCheckin{sign(time.Now().Add(-time.Minute), req)}})
		},
		"direct": func(s *Server, req *wire.CheckinRequest, _ func(time.Time, *wire.CheckinRequest) *wire.SignedCheckin) {
			s.checkin("agent-1", "192.0.2.10", req)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, st, sign := rollupOffice(t)
			then := runReport(6, wire.ItemReport_STATUS_FAILED)
			then.Addresses = []string{"10.0.0.1"}
			old := sign(time.Now().Add(-2*time.Minute), then)
			now := runReport(6, wire.ItemReport_STATUS_FAILED)
			now.Addresses = []string{"10.0.0.2"}
			newer(s, now, sign)
			resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: []*wire.SignedCheckin{old}})
			m, err := st.Member("agent-1")
			if err != nil {
				t.Fatal(err)
			}
			if n := len(resp.GetCheckin().GetRollupAcks()); n != 0 || len(m.Addresses) != 1 || m.Addresses[0] != "10.0.0.2" {
				t.Fatalf("a check-in signed before the last kept was taken (%d acks): addresses %v, want [10.0.0.2]", n, m.Addresses)
			}
		})
	}
}

// Refusing what is not newer must not refuse what is: the same check-in
// played back at once, a later one of the same second that tells of a
// newer run, and one signed a little before the last direct check-in
// arrived (the member's clock a few seconds behind the coordinator's).
func TestRolledUpCheckinNewerThanTheLastKeptIsKept(t *testing.T) {
	s, st, sign := rollupOffice(t)
	carry := func(sc *wire.SignedCheckin) int {
		t.Helper()
		resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: []*wire.SignedCheckin{sc}})
		if err := resp.AsError(); err != nil {
			t.Fatal(err)
		}
		return len(resp.GetCheckin().GetRollupAcks())
	}
	if err := s.checkin("agent-1", "192.0.2.10", runReport(1, wire.ItemReport_STATUS_COMPLIANT)).AsError(); err != nil {
		t.Fatal(err)
	}
	second := time.Now().Truncate(time.Second)
	if n := carry(sign(second.Add(-20*time.Second), runReport(2, wire.ItemReport_STATUS_COMPLIANT))); n != 1 {
		t.Fatalf("a check-in signed 20 s before the direct one arrived (a member clock behind) got %d acks, want 1", n)
	}
	first := sign(second, runReport(3, wire.ItemReport_STATUS_COMPLIANT))
	if n := carry(first); n != 1 {
		t.Fatalf("a newer check-in got %d acks, want 1", n)
	}
	if n := carry(first); n != 0 {
		t.Fatalf("the same check-in again got %d acks, want it refused", n)
	}
	if n := carry(sign(second, runReport(4, wire.ItemReport_STATUS_FAILED))); n != 1 {
		t.Fatalf("a check-in of the same second telling of a newer run got %d acks, want 1", n)
	}
	if m, err := st.Member("agent-1"); err != nil || m.Report.Seq != 4 {
		t.Fatalf("kept %+v (%v), want run 4", m.Report, err)
	}
}

// A member recorded before the coordinator kept check-in times (no
// rolled_up_signed, no direct_at) has its next rolled-up check-in kept.
func TestMemberRecordedWithoutCheckinTimesTakesItsNextRolledUpCheckin(t *testing.T) {
	s, st, sign := rollupOffice(t)
	m, err := st.Member("agent-1")
	if err != nil {
		t.Fatal(err)
	}
	if !m.RolledUpSigned.IsZero() || !m.DirectAt.IsZero() {
		t.Fatalf("setup: times %v %v", m.RolledUpSigned, m.DirectAt)
	}
	resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2",
		Rollup: []*wire.SignedCheckin{sign(time.Now().Add(-5*time.Minute), runReport(1, wire.ItemReport_STATUS_COMPLIANT))}})
	if n := len(resp.GetCheckin().GetRollupAcks()); n != 1 {
		t.Fatalf("%d acks (%v), want 1", n, resp.GetError())
	}
}

// One batch can carry the same signed check-in many times (up to
// maxRollup, 5000): each copy would be verified, written to the store and
// answered with a signed ack, so one request of a few megabytes would
// cost the coordinator thousands of signature checks, writes and
// signatures. A carrier keeps the newest of each member: a batch's
// copies are refused before they are verified, and the member's one
// check-in kept once.
func TestRollupBatchTakesEachMemberOnce(t *testing.T) {
	s, st, sign := rollupOffice(t)
	sc := sign(time.Now(), runReport(1, wire.ItemReport_STATUS_COMPLIANT))
	batch := make([]*wire.SignedCheckin, 200)
	for i := range batch {
		batch[i] = sc
	}
	start := time.Now()
	resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: batch})
	took := time.Since(start)
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Member("agent-1"); err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetCheckin().GetRollupAcks()); n != 1 {
		t.Fatalf("one member's check-in carried %d times in one batch was kept and acknowledged %d times (%v); want it once", len(batch), n, took)
	}
}

// Of a member's check-ins in one batch the one signed last is the one
// kept, wherever it is in the batch.
func TestRollupBatchKeepsTheNewestOfAMember(t *testing.T) {
	s, st, sign := rollupOffice(t)
	now := time.Now()
	batch := []*wire.SignedCheckin{
		sign(now.Add(-2*time.Minute), runReport(1, wire.ItemReport_STATUS_COMPLIANT)),
		sign(now, runReport(3, wire.ItemReport_STATUS_FAILED)),
		sign(now.Add(-time.Minute), runReport(2, wire.ItemReport_STATUS_COMPLIANT)),
	}
	resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2", Rollup: batch})
	if n := len(resp.GetCheckin().GetRollupAcks()); n != 1 {
		t.Fatalf("%d acks, want 1", n)
	}
	if m, err := st.Member("agent-1"); err != nil || m.Report.Seq != 3 {
		t.Fatalf("kept %+v (%v), want run 3, the newest", m.Report, err)
	}
}

// claimed reads a rolled-up check-in's member and signing time without
// decoding the rest, and says so when it cannot.
func TestClaimedReadsTheMemberAndTimeOfARolledUpCheckin(t *testing.T) {
	b, err := proto.Marshal(&wire.RollupReport{MemberId: "ag-1", SignedUnix: 1700000000, Checkin: runReport(9, wire.ItemReport_STATUS_COMPLIANT)})
	if err != nil {
		t.Fatal(err)
	}
	if id, at, ok := claimed(b); !ok || id != "ag-1" || at != 1700000000 {
		t.Fatalf("claimed: %q %d %v", id, at, ok)
	}
	for name, b := range map[string][]byte{"empty": nil, "cut": b[:len(b)-3], "no member": {0x10, 0x01}} {
		if id, _, ok := claimed(b); ok {
			t.Errorf("%s: claimed %q", name, id)
		}
	}
}

// claimed decodes bytes a carrier sends, unverified.
func FuzzClaimed(f *testing.F) {
	b, _ := proto.Marshal(&wire.RollupReport{MemberId: "ag-1", SignedUnix: 1700000000, Checkin: runReport(9, wire.ItemReport_STATUS_COMPLIANT)})
	f.Add(b)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, at, ok := claimed(b)
		var r wire.RollupReport
		if ok && proto.Unmarshal(b, &r) == nil && (r.GetMemberId() != id || r.GetSignedUnix() != at) {
			t.Fatalf("claimed %q at %d, the report says %q at %d", id, at, r.GetMemberId(), r.GetSignedUnix())
		}
	})
}
