package patches

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// writeCounting is the real store, counting the write transactions
// Evaluate asks of it.
type writeCounting struct {
	*store.Store
	writes int
}

func (w *writeCounting) Approve(a store.PatchApproval) (bool, error) {
	w.writes++
	return w.Store.Approve(a)
}

func (w *writeCounting) SetCleanSince(office, patch string, since time.Time) error {
	w.writes++
	return w.Store.SetCleanSince(office, patch, since)
}

// The coordinator evaluates the rules every hour. Evaluate asked the store
// to approve every patch of the rule's severity in the test office, and to
// record (or forget) its clean-since time, whether or not anything had
// changed: two synced bbolt write transactions per catalog patch per rule
// every hour, and one more per target office for each patch that had been
// clean long enough — a catalog of thousands of patches held bbolt's one
// writer for minutes of every hour against the check-ins. An evaluation
// that changes nothing now writes nothing.
func TestEvaluatingAgainWithNothingNewWritesNothing(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, o := range []string{"lab", "berlin", "paris"} {
		if err := st.CreateOffice(store.Office{Name: o, Mode: "direct"}); err != nil {
			t.Fatal(err)
		}
	}
	var catalog []store.Patch
	for i := range 40 {
		catalog = append(catalog, store.Patch{ID: fmt.Sprintf("OUT-%d", i), Severity: "high", Package: "p", FixedVersion: "1"})
	}
	if _, _, err := st.ImportPatches(catalog, CheckCatalog); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutRule(store.ApprovalRule{Name: "r", MinSeverity: "high", TestOffice: "lab", AfterDays: 3}); err != nil {
		t.Fatal(err)
	}
	// Two lab agents: the first has every patch; the second has the
	// first half (the others are missing on it).
	setReport(t, st, "a1", "lab", "compliant")
	setReport(t, st, "a2", "lab", "compliant")
	items := func(installed int) []store.ItemStatus {
		var out []store.ItemStatus
		for i, p := range catalog {
			status := "pending"
			if i < installed {
				status = "compliant"
			}
			out = append(out, store.ItemStatus{ID: "patch/" + p.ID, Kind: "patch", Status: status})
		}
		return out
	}
	for id, installed := range map[string]int{"a1": len(catalog), "a2": len(catalog) / 2} {
		if _, err := st.UpdateMember(id, func(m *store.Member) {
			m.Report = &store.Report{Revision: 1, At: time.Now(), Items: items(installed)}
		}); err != nil {
			t.Fatal(err)
		}
	}

	w := &writeCounting{Store: st}
	day0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	added, err := Evaluate(w, day0)
	if err != nil || len(added) != len(catalog) {
		t.Fatalf("day 0: %d approved, %v; want every patch approved in lab", len(added), err)
	}
	for i, at := range []time.Time{day0.Add(time.Hour), day0.Add(2 * time.Hour)} {
		w.writes = 0
		added, err := Evaluate(w, at)
		if err != nil || len(added) != 0 {
			t.Fatalf("evaluation %d: %+v, %v; want nothing new", i+2, added, err)
		}
		if w.writes != 0 {
			t.Errorf("evaluation %d changed nothing and made %d write transactions", i+2, w.writes)
		}
	}
	// Three days on, the first half goes to the other offices: that is
	// written, once.
	added, err = Evaluate(w, day0.Add(3*24*time.Hour+time.Hour))
	if err != nil || len(added) != len(catalog) { // half the catalog, in berlin and paris
		t.Fatalf("after 3 clean days: %d approved, %v; want %d", len(added), err, len(catalog))
	}
	w.writes = 0
	if added, err := Evaluate(w, day0.Add(4*24*time.Hour)); err != nil || len(added) != 0 || w.writes != 0 {
		t.Errorf("the evaluation after: %d approved, %v, %d write transactions; want none", len(added), err, w.writes)
	}
	for _, o := range []string{"berlin", "paris"} {
		if aps, _ := st.Approvals(o); len(aps) != len(catalog)/2 {
			t.Errorf("%s has %d approvals, want %d", o, len(aps), len(catalog)/2)
		}
	}
}
