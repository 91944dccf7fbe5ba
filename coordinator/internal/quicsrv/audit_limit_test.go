package quicsrv

import (
	"fmt"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// A host's audit records are bounded over time: a spool that waited out
// an outage goes in at once, a host that writes without end is refused
// (its records stay in its spool) and does not hold others back.
func TestAuditRecordsBoundedPerHost(t *testing.T) {
	s, st, _ := checkinServer(t)
	if err := st.InitAuth(); err != nil {
		t.Fatal(err)
	}
	batch := func(n int, prefix string) *wire.AuditBatch {
		b := &wire.AuditBatch{}
		for i := range n {
			b.Records = append(b.Records, &wire.AuditRecord{Id: fmt.Sprintf("%s-%d", prefix, i), AtUnixMs: time.Now().UnixMilli(), User: "tina", Action: "exec", Allowed: true})
		}
		return b
	}
	if resp := s.storeAudit("agent-1", batch(auditBurst, "spool")); resp.GetError() != nil {
		t.Fatalf("a full spool after an outage: %v", resp.GetError())
	}
	resp := s.storeAudit("agent-1", batch(1000, "more"))
	if resp.GetError().GetCode() != wire.Error_CODE_DENIED {
		t.Fatalf("a host past its budget: %v", resp)
	}
	if resp := s.storeAudit("agent-2", batch(10, "other")); resp.GetError() != nil {
		t.Fatalf("another host held back: %v", resp.GetError())
	}
	evs, err := st.Audit(store.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != auditBurst+10 {
		t.Fatalf("%d records stored, want %d", len(evs), auditBurst+10)
	}
}
