package coordinator

import (
	"context"
	"log/slog"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// DefaultAuditKeep is how long audit events are kept from when they
// reached the coordinator, when audit_keep is not set: a year.
const DefaultAuditKeep = 365 * 24 * time.Hour

// retentionEvery is how often what is past its retention is deleted.
const retentionEvery = time.Hour

// auditKeep is the configured retention of audit events.
func (c Config) auditKeep() time.Duration {
	if c.AuditKeep == 0 {
		return DefaultAuditKeep
	}
	return c.AuditKeep
}

// runRetention deletes what is past its retention at start, then every
// retentionEvery, until ctx ends.
func runRetention(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) {
	for {
		pruneAudit(st, keep, time.Now(), log)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retentionEvery):
		}
	}
}

// pruneAudit deletes the audit events that arrived more than keep before
// now.
func pruneAudit(st *store.Store, keep time.Duration, now time.Time, log *slog.Logger) {
	n, err := st.PruneAudit(now.Add(-keep))
	if err != nil {
		log.Error("delete audit events past audit_keep", "pruned", n, "err", err)
		return
	}
	if n > 0 {
		log.Info("deleted audit events past audit_keep", "events", n, "audit_keep", keep)
	}
}
