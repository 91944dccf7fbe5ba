package quicsrv

import (
	"log/slog"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// A check-in's runs are all kept as its newest is, so the bound on a
// run's items holds for the backlog's runs too: one member must not make
// the coordinator store (and hold in memory) a run of millions of items,
// two bytes each on the wire.
func TestCheckinBacklogRunOverTheItemBoundIsRefused(t *testing.T) {
	s, st, _ := checkinServer(t)
	items := make([]*wire.ItemReport, wire.MaxCheckinReportItems+1)
	for i := range items {
		items[i] = &wire.ItemReport{}
	}
	resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1",
		Backlog: []*wire.Report{{Seq: 1, Revision: 1, Items: items}}, Report: &wire.Report{Seq: 2, Revision: 1}})
	if resp.GetError() == nil {
		t.Error("a check-in with a backlog run over the item bound was taken")
	}
	runs, err := st.Runs("agent-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if len(r.Items) > wire.MaxCheckinReportItems {
			t.Fatalf("run %d of %d items was stored", r.Seq, len(r.Items))
		}
	}
}

// A roll-up member's batch may carry thousands of check-ins (maxRollup),
// each a few bytes when it is empty: refused one by one at warn level,
// one request of a member would write thousands of lines to the
// coordinator's log, as often as it likes. Refusals of one batch are
// told in a line or two; each one's reason at debug level.
func TestRefusedRolledUpCheckinsOfABatchAreLoggedOnce(t *testing.T) {
	s, _, logs := checkinServer(t)
	batch := make([]*wire.SignedCheckin, maxRollup)
	for i := range batch {
		batch[i] = &wire.SignedCheckin{}
	}
	resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1", Rollup: batch})
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetCheckin().GetRollupAcks()); n != 0 {
		t.Fatalf("%d empty check-ins acknowledged", n)
	}
	if n := logs.count(slog.LevelWarn, "rolled-up check-in"); n == 0 || n > 2 {
		t.Fatalf("%d warnings for one batch of refused check-ins", n)
	}
}
