package agent

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// However large the spooled records (a spool written before records were
// bounded held whole quarter-megabyte paths), each audit message stays
// within the message limit, holds at most maxAuditBatch records, and the
// spool drains batch after batch.
func TestAuditBatchesStayWithinTheMessageLimit(t *testing.T) {
	var spool []*wire.AuditRecord
	for i := range 60 {
		spool = append(spool, &wire.AuditRecord{Id: fmt.Sprintf("big%d", i), User: "?", Action: "put",
			Detail: "put /tmp/" + strings.Repeat("A", 250<<10) + ": refused: access token is malformed", Host: "ag-1"})
	}
	for i := range 2500 {
		spool = append(spool, &wire.AuditRecord{Id: fmt.Sprintf("small%d", i), User: "tina", Action: "exec", Detail: "exec /bin/true", Allowed: true, Host: "ag-1"})
	}
	sent, batches := 0, 0
	for sent < len(spool) {
		b := auditBatch(spool[sent:])
		if len(b) == 0 || len(b) > maxAuditBatch {
			t.Fatalf("batch %d holds %d records, want 1 to %d", batches, len(b), maxAuditBatch)
		}
		if err := wire.WriteMsg(io.Discard, &wire.Request{Body: &wire.Request_Audit{Audit: &wire.AuditBatch{Records: b}}}); err != nil {
			t.Fatalf("batch %d of %d records: %v", batches, len(b), err)
		}
		sent += len(b)
		batches++
	}
	if batches < 5 {
		t.Fatalf("%d batches for 15 MiB of records, want them split by size", batches)
	}
}
