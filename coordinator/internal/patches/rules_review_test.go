package patches

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// removedMeanwhile is the store as the hourly evaluation sees it when
// "outpost patch rm A --revoke" runs right after the evaluation read the
// catalog (patch rm does not hold anything Evaluate takes).
type removedMeanwhile struct {
	*store.Store
	t  *testing.T
	id string
}

func (s removedMeanwhile) Patches() ([]store.Patch, error) {
	ps, err := s.Store.Patches()
	if _, _, err := s.Store.DeletePatch(s.id, true); err != nil {
		s.t.Fatal(err)
	}
	return ps, err
}

// A patch removed from the catalog while the rules are evaluated makes the
// whole evaluation fail: the other patches (and every later rule) are not
// approved that hour, and the API then republishes none of the offices that
// did gain approvals before the failure (EvaluateRules returns early).
func TestAPatchRemovedDuringRuleEvaluationDoesNotAbortIt(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateOffice(store.Office{Name: "lab", Mode: "direct"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.ImportPatches([]store.Patch{
		{ID: "OUT-1", Severity: "high", Package: "a", FixedVersion: "1"},
		{ID: "OUT-2", Severity: "high", Package: "b", FixedVersion: "1"},
	}, CheckCatalog); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutRule(store.ApprovalRule{Name: "r", MinSeverity: "high", TestOffice: "lab"}); err != nil {
		t.Fatal(err)
	}
	added, err := Evaluate(removedMeanwhile{st, t, "OUT-1"}, time.Now())
	if err != nil {
		t.Errorf("the evaluation failed because OUT-1 left the catalog meanwhile: %v", err)
	}
	aps, _ := st.Approvals("lab")
	if len(aps) != 1 || aps[0].Patch != "OUT-2" {
		t.Fatalf("approvals in lab %+v (added %+v): want OUT-2, which is still in the catalog, approved by the rule", aps, added)
	}
}
