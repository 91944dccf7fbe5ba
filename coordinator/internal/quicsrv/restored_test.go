package quicsrv

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// After a restore, a member holding a revision above its office's makes
// the office's revisions move past it: once a minute at most, never for a
// revision far out of reach, and not once the 30 days are over or when
// the store was never restored.
func TestRestoredStoreCatchesUpWithMembersRevisions(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOffice(store.Office{Name: "hq"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := st.ApplyPolicy("hq", "items: []", time.Now(), func(uint64) ([]byte, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
	}
	var raised []uint64
	raise := func(office string, above uint64) error {
		if _, err := st.RaiseRevision(office, above); err != nil {
			return err
		}
		raised = append(raised, above)
		return nil
	}
	s := &Server{store: st, log: logging.Discard()}
	now := time.Now()
	m := &store.Member{ID: "ag-1", Office: "hq", Revision: 9}

	s.SetRevisionRaise(raise)
	s.caughtUp(m, now)
	if len(raised) != 0 {
		t.Fatalf("a store never restored raised %v", raised)
	}

	if err := st.MarkRestored(store.Restored{At: now.Add(-time.Hour), BackupMade: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s = &Server{store: st, log: logging.Discard()}
	s.SetRevisionRaise(raise)
	s.caughtUp(&store.Member{ID: "ag-0", Office: "hq", Revision: 2}, now) // behind: nothing to do
	s.caughtUp(m, now)
	if rev, _ := st.Revision("hq"); len(raised) != 1 || rev != 9 {
		t.Fatalf("raised %v, office at %d; want one raise to 9", raised, rev)
	}
	s.caughtUp(&store.Member{ID: "ag-2", Office: "hq", Revision: 12}, now.Add(30*time.Second))
	if len(raised) != 1 {
		t.Fatalf("raised again within a minute: %v", raised)
	}
	s.caughtUp(&store.Member{ID: "ag-2", Office: "hq", Revision: 12}, now.Add(2*time.Minute))
	if rev, _ := st.Revision("hq"); len(raised) != 2 || rev != 12 {
		t.Fatalf("raised %v, office at %d; want a second raise to 12", raised, rev)
	}
	s.caughtUp(&store.Member{ID: "ag-3", Office: "hq", Revision: 12 + maxRevisionLead + 1}, now.Add(4*time.Minute))
	if len(raised) != 2 {
		t.Fatalf("a revision far out of reach was taken: %v", raised)
	}
	s.caughtUp(&store.Member{ID: "ag-2", Office: "hq", Revision: 20}, now.Add(restoreCatchUp))
	if len(raised) != 2 {
		t.Fatalf("raised after the catch-up ended: %v", raised)
	}
	if ok, err := st.RaiseRevision("hq", 5); ok || err != nil {
		t.Fatalf("RaiseRevision lowered the revision: %v %v", ok, err)
	}
}
