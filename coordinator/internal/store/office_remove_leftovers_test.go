package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// An office made again under the name of a removed one starts afresh: its
// agents are not told the removed office's released revision, and its
// patches are not approved by what an admin approved for the removed one.
func TestRemovedOfficeTakesItsReleaseAndApprovals(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"))
	now := time.Now()
	lyon := Office{Name: "lyon", Mode: "distribution", DistributionServer: "10.0.0.5:8090"}
	if err := s.CreateOffice(lyon); err != nil {
		t.Fatal(err)
	}
	p, err := s.ApplyPolicy("lyon", "items: []", now, func(rev uint64) ([]byte, error) { return []byte("old lyon"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Release("lyon", p.Revision, now); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if _, _, err := s.ImportPatches([]Patch{{ID: "OUT-1", Severity: "high"}}, func(map[string]Patch) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Approve(PatchApproval{Patch: "OUT-1", Office: "lyon", By: "admin", At: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCleanSince("lyon", "OUT-1", now); err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteOffice("lyon"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOffice(lyon); err != nil {
		t.Fatal(err)
	}
	if rel, err := s.Released("lyon"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the new office lyon has the removed one's release: %+v, %v", rel, err)
	}
	if as, err := s.Approvals("lyon"); err != nil || len(as) != 0 {
		t.Errorf("the new office lyon has the removed one's approvals: %+v, %v", as, err)
	}
	if since, err := s.CleanSince("lyon", "OUT-1"); err != nil || !since.IsZero() {
		t.Errorf("the new office lyon has the removed one's clean time: %v, %v", since, err)
	}
	if _, revoked, err := s.DeletePatch("OUT-1", false); err != nil {
		t.Errorf("a patch approved only for a removed office cannot be removed: %v (offices %v)", err, revoked)
	}
}
