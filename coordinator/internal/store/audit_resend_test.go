package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A host sends its audit spool; the coordinator stores it and answers, and
// the host loses power before it writes its spool again without the
// acknowledged records (AckAudit). It comes back a day later and sends the
// same records again. AppendAudit keeps them once: it looked for them only
// among the last 10,000 events of the whole fleet, and past that stored
// them twice; stored ids are indexed now.
func TestAuditResentDaysLaterIsStoredOnce(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-24 * time.Hour).UTC()
	sent := AuditEvent{At: at, Actor: "tina", Action: "exec", Target: "host ag-1", Detail: "systemctl restart app", Allowed: true, Source: "ag-1", ID: "00112233aabbccdd"}
	if err := s.AppendAudit(sent); err != nil {
		t.Fatal(err)
	}
	// The rest of the fleet goes on meanwhile.
	var others []AuditEvent
	for i := range 10000 {
		others = append(others, AuditEvent{At: at.Add(time.Duration(i) * time.Millisecond), Actor: "sam", Action: "exec", Target: "host ag-2", Allowed: true, Source: "ag-2", ID: fmt.Sprintf("%016x", i)})
	}
	if err := s.AppendAudit(others...); err != nil {
		t.Fatal(err)
	}
	// ag-1 is back and sends what its spool still holds.
	if err := s.AppendAudit(sent); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Audit(AuditFilter{Source: "ag-1", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("the record resent after the power loss is stored %d times, want once", len(evs))
	}
}
