package session

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

func spoolServer(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := New(Config{DataDir: dir, MemberID: "ag-1", Shell: "/bin/sh"}, fixedPolicy{}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func details(recs []*wire.AuditRecord) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.GetDetail())
	}
	return strings.Join(out, " ")
}

// A record is appended to the spool as it is made — the file is the same
// file, one frame longer — however many records wait for the coordinator;
// only records leaving it (acknowledged) write it again. What is pending
// survives a restart, in order.
func TestAuditRecordsAreAppendedAndSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	s := spoolServer(t, dir)
	for _, d := range []string{"a", "b", "c"} {
		s.record("tina", "exec", d, true)
	}
	path := filepath.Join(dir, spoolFile)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s.record("tina", "exec", "d", true)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || after.Size() <= before.Size() {
		t.Fatalf("recording one more wrote the spool again (same file %v, %d → %d bytes)", os.SameFile(before, after), before.Size(), after.Size())
	}
	pending := s.PendingAudit()
	s.AckAudit(pending[:2])
	if acked, _ := os.Stat(path); os.SameFile(after, acked) || acked.Size() >= after.Size() {
		t.Fatal("acknowledged records are still in the spool")
	}
	s.record("tina", "exec", "e", true)
	if got := details(spoolServer(t, dir).PendingAudit()); got != "c d e" {
		t.Fatalf("after a restart the spool holds %q, want %q", got, "c d e")
	}
}

// A crash in the middle of an append leaves a record cut short at the
// end: the records before it are kept, the cut one is dropped, and the
// spool is written again without it, so later appends are read back.
func TestAuditSpoolCutShortByACrashKeepsTheRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	s := spoolServer(t, dir)
	s.record("tina", "exec", "a", true)
	s.record("tina", "exec", "b", true)
	path := filepath.Join(dir, spoolFile)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := frame(&wire.AuditRecord{Id: "cut", Detail: "c"})
	if err := os.WriteFile(path, append(whole, b[:len(b)-3]...), 0o600); err != nil {
		t.Fatal(err)
	}
	s = spoolServer(t, dir)
	if got := details(s.PendingAudit()); got != "a b" {
		t.Fatalf("kept %q, want %q", got, "a b")
	}
	s.record("tina", "exec", "d", true)
	if got := details(spoolServer(t, dir).PendingAudit()); got != "a b d" {
		t.Fatalf("after one more and a restart: %q, want %q", got, "a b d")
	}
	// A length no record can have is damage too, and so is a tail of
	// zeros (a file system's unwritten blocks after a power loss): read,
	// it would be a record without an id, sent to the coordinator.
	for _, tail := range [][]byte{{0xff, 0xff, 0xff, 0xff}, make([]byte, 64)} {
		if err := os.WriteFile(path, append(bytes.Clone(whole), tail...), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := details(spoolServer(t, dir).PendingAudit()); got != "a b" {
			t.Fatalf("kept %q, want %q", got, "a b")
		}
	}
}

// A record appended while the spool was written again stands in it twice;
// it is read back once.
func TestAuditRecordInTheSpoolTwiceIsReadOnce(t *testing.T) {
	dir := t.TempDir()
	r := &wire.AuditRecord{Id: "r1", Detail: "a"}
	if err := writeSpool(filepath.Join(dir, spoolFile), []*wire.AuditRecord{r, {Id: "r2", Detail: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := appendSpool(filepath.Join(dir, spoolFile), r); err != nil {
		t.Fatal(err)
	}
	if got := details(spoolServer(t, dir).PendingAudit()); got != "a b" {
		t.Fatalf("read %q, want %q", got, "a b")
	}
}

// A spool written before the log (one AuditBatch) is read, and replaced
// by the log.
func TestAuditSpoolFromBeforeTheLogIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	b, _ := proto.Marshal(&wire.AuditBatch{Records: []*wire.AuditRecord{{Id: "r1", Detail: "a"}, {Id: "r2", Detail: "b\x1b[2J"}}})
	if err := os.WriteFile(filepath.Join(dir, oldSpoolFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := spoolServer(t, dir)
	if got := details(s.PendingAudit()); got != `a b\x1b[2J` {
		t.Fatalf("took over %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, oldSpoolFile)); !os.IsNotExist(err) {
		t.Fatalf("the old spool is still there: %v", err)
	}
	s.record("tina", "exec", "c", true)
	if got := details(spoolServer(t, dir).PendingAudit()); got != `a b\x1b[2J c` {
		t.Fatalf("after a restart: %q", got)
	}
}

func FuzzReadSpool(f *testing.F) {
	a, _ := frame(&wire.AuditRecord{Id: "r1", Detail: "a"})
	b, _ := frame(&wire.AuditRecord{Id: "r2", Detail: "b"})
	f.Add(append(a, b...))
	f.Add(a[:3])
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), spoolFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		recs, cut, good, err := readSpool(path)
		if err != nil {
			t.Fatal(err)
		}
		// Written again, what was read reads back the same, whole.
		if err := writeSpool(path, recs); err != nil {
			t.Fatal(err)
		}
		again, cut2, good2, err := readSpool(path)
		if err != nil || cut2 || len(again) != len(recs) || good > int64(len(data)) || (!cut && good != int64(len(data))) || good2 < 0 {
			t.Fatalf("read %d records (cut %v), written and read again %d (cut %v, %v)", len(recs), cut, len(again), cut2, err)
		}
		seen := map[string]bool{}
		for i, r := range again {
			if seen[r.GetId()] || !proto.Equal(r, recs[i]) {
				t.Fatalf("record %d read back as %v", i, r)
			}
			seen[r.GetId()] = true
		}
	})
}
