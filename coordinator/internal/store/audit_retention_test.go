package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func auditCount(t testing.TB, s *Store) (events, ids int) {
	t.Helper()
	if err := s.db.View(func(tx *bolt.Tx) error {
		events, ids = tx.Bucket(bAudit).Stats().KeyN, tx.Bucket(bAuditIDs).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return events, ids
}

// Audit events are kept for as long as the admin says from when they
// reached the coordinator, not by the time a host wrote in them: a host
// whose clock is wrong, or that sends a spool after a long outage, has
// its records kept as long as any. What goes, goes with its entry in the
// index of host record ids. Without pruning, a year of 20,000 hosts'
// sessions and commands stayed for good, and so did the index.
func TestAuditPrunedByArrival(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	day0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	ev := func(i int, at time.Time) AuditEvent {
		return AuditEvent{At: at, Actor: "tina", Action: "exec", Allowed: true, Source: "ag-1", ID: fmt.Sprintf("%016x", i)}
	}
	var old []AuditEvent
	for i := range 25000 { // more than one pruning transaction takes
		old = append(old, ev(i, day0))
	}
	if err := s.appendAudit(day0, old...); err != nil {
		t.Fatal(err)
	}
	mid := day0.Add(200 * 24 * time.Hour)
	if err := s.appendAudit(mid, ev(100000, mid)); err != nil {
		t.Fatal(err)
	}
	// A host whose clock says January sends it in the next year.
	late := day0.Add(400 * 24 * time.Hour)
	if err := s.appendAudit(late, ev(100001, day0)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneAudit(late.Add(-365 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 25000 {
		t.Errorf("pruned %d events, want the 25,000 that arrived on the first day", n)
	}
	if events, ids := auditCount(t, s); events != 2 || ids != 2 {
		t.Fatalf("after pruning: %d events and %d indexed ids kept, want 2 and 2", events, ids)
	}
	got, err := s.Audit(AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ev(100001, day0).ID || got[1].ID != ev(100000, mid).ID {
		t.Fatalf("kept %+v, want the events that arrived on day 200 and day 400", got)
	}
	// Pruning again finds nothing more.
	if n, err := s.PruneAudit(late.Add(-365 * 24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned again: %d, %v", n, err)
	}
}

// A store from before arrival was recorded: its events count as arrived
// at the first start after the upgrade, so none goes before a whole
// retention period has passed.
func TestAuditOfOlderStoreKeptAfterUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-3 * 365 * 24 * time.Hour).UTC()
	if err := s.AppendAudit(AuditEvent{At: long, Actor: "sam", Action: "login", Allowed: true, Source: "coordinator"}); err != nil {
		t.Fatal(err)
	}
	// As the store of an older coordinator was.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bAuditArrivals) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneAudit(time.Now().Add(-24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned %d events of the older store (%v), want none yet", n, err)
	}
	if events, _ := auditCount(t, s); events != 1 {
		t.Fatalf("%d events kept, want 1", events)
	}
	if n, err := s.PruneAudit(time.Now().Add(48 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("once the retention passed: pruned %d (%v), want 1", n, err)
	}
}
