package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A release is of the office's current revision only, and never goes back.
func TestReleaseFollowsTheCurrentRevision(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"))
	if err := s.CreateOffice(Office{Name: "lyon", Mode: "distribution", DistributionServer: "10.0.0.5:8090"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Released("lyon"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release before any: %v", err)
	}
	now := time.Now()
	apply := func() uint64 {
		p, err := s.ApplyPolicy("lyon", "items: []", now, func(rev uint64) ([]byte, error) { return []byte{byte(rev)}, nil })
		if err != nil {
			t.Fatal(err)
		}
		return p.Revision
	}
	r1 := apply()
	r2 := apply()
	if ok, err := s.Release("lyon", r1, now); err != nil || ok {
		t.Fatalf("released a revision that is no longer current: %v %v", ok, err)
	}
	if ok, err := s.Release("lyon", r2, now); err != nil || !ok {
		t.Fatalf("release the current revision: %v %v", ok, err)
	}
	if ok, _ := s.Release("lyon", r2, now); ok {
		t.Fatal("released the same revision twice")
	}
	rel, err := s.Released("lyon")
	if err != nil || rel.Revision != r2 || len(rel.Signed) != 1 || rel.Signed[0] != byte(r2) {
		t.Fatalf("release %+v, %v", rel, err)
	}
	o := Office{Name: "lyon", Mode: "distribution", DistributionServer: "10.0.0.5:8090"}
	for url, want := range map[string]bool{"https://10.0.0.5:8090": true, "https://10.0.0.5:8091": false, "": false, "http://10.0.0.5:8090/": true} {
		if got := o.IsDistributionServer(url); got != want {
			t.Errorf("IsDistributionServer(%q) = %v", url, got)
		}
	}
}
