package state

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// On a full disk the last run is still the report check-ins carry: the
// coordinator is not left showing the run before as the current one.
func TestFullDiskKeepsNewReportInMemory(t *testing.T) {
	disk := testutil.TinyDisk(t, "256k")
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := filepath.Join(disk, "state")
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReport(&wire.Report{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	release := testutil.FillDisk(t, disk)
	r2 := failedRun(2)
	if err := s.SetReport(r2); err == nil {
		t.Fatal("the disk took the report: not full")
	}
	if got := s.Report(); got != r2 {
		t.Fatalf("report after a failed write: revision %d, want the new run's 2", got.GetRevision())
	}
	// Space again: the next save writes it, and a restart finds it.
	release()
	r3 := failedRun(3)
	if err := s.SetReport(r3); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, pub); err != nil || s.Report().GetRevision() != 3 {
		t.Fatalf("after restart: revision %d (%v), want 3", s.Report().GetRevision(), err)
	}
}

// On a full disk the runs the disk did not take are still numbered and
// sent with check-ins, and written once it takes them again.
func TestFullDiskKeepsRunsInMemory(t *testing.T) {
	disk := testutil.TinyDisk(t, "256k")
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := filepath.Join(disk, "state")
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(failedRun(1)); err != nil {
		t.Fatal(err)
	}
	release := testutil.FillDisk(t, disk)
	for rev := uint64(2); rev <= 3; rev++ {
		r := failedRun(rev)
		if _, err := s.Enqueue(r); err == nil {
			t.Fatal("the disk took the run: not full")
		}
		if r.GetSeq() != rev {
			t.Fatalf("run %d numbered %d", rev, r.GetSeq())
		}
	}
	// Run 3 is the newest: it travels as the report.
	if got := seqsOf(backlogOf(s, 64)); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("backlog %v on a full disk, want runs [1 2]", got)
	}
	release()
	r4 := failedRun(4)
	if _, err := s.Enqueue(r4); err != nil || r4.GetSeq() != 4 {
		t.Fatalf("run 4 numbered %d: %v", r4.GetSeq(), err)
	}
	s, err = Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(backlogOf(s, 64)); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("after restart: backlog %v, want runs [1 2 3]", got)
	}
}

func failedRun(rev uint64) *wire.Report {
	return &wire.Report{Revision: rev, Items: []*wire.ItemReport{{Id: "pkg", Status: wire.ItemReport_STATUS_FAILED,
		Message: "content not available, nothing installed: no space left on device"}}}
}
