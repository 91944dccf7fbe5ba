package coordinator

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// The coordinator deletes audit events once audit_keep has passed since
// they arrived (a year unless set), and keeps those within it; an
// audit_keep shorter than the day events are pruned by is refused.
func TestAuditKeptForAuditKeep(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.InitAuth(); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendAudit(store.AuditEvent{At: time.Now(), Actor: "tina", Action: "login", Allowed: true, Source: "coordinator"}); err != nil {
		t.Fatal(err)
	}
	keep := DefaultConfig().auditKeep()
	if keep != DefaultAuditKeep || keep < 365*24*time.Hour {
		t.Fatalf("default audit_keep %v, want a year", keep)
	}
	log := slog.New(slog.DiscardHandler)
	count := func() int {
		t.Helper()
		evs, err := st.Audit(store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	pruneAudit(st, keep, time.Now().Add(keep-48*time.Hour), log)
	if n := count(); n != 1 {
		t.Fatalf("an event within audit_keep was deleted: %d left", n)
	}
	pruneAudit(st, keep, time.Now().Add(keep+48*time.Hour), log)
	if n := count(); n != 0 {
		t.Fatalf("%d events kept past audit_keep", n)
	}

	cfg := DefaultConfig()
	cfg.AuditKeep = time.Hour
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "audit_keep") {
		t.Fatalf("Validate: %v, want audit_keep refused", err)
	}
	cfg.AuditKeep = 90 * 24 * time.Hour
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate a 90-day audit_keep: %v", err)
	}
}
