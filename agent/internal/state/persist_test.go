package state

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// failingDisk makes s's writes fail with the errno stored in it (none:
// they go to disk); each failure names another temporary file, as a real
// one does.
func failingDisk(s *State) *atomic.Value {
	var errno atomic.Value
	errno.Store(syscall.Errno(0))
	var n atomic.Int64
	s.write = func(path string, b []byte, perm os.FileMode) error {
		if e := errno.Load().(syscall.Errno); e != 0 {
			tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp-%d", filepath.Base(path), n.Add(1)))
			return fmt.Errorf("write %s: %w", path, &os.PathError{Op: "write", Path: tmp, Err: e})
		}
		return fsutil.WriteFileAtomic(path, b, perm)
	}
	return &errno
}

// A report the disk does not take is the report all the same; the
// failure is told once (not at every run), and the write is retried.
func TestReportWriteFailureKeepsNewReportAndIsToldOnce(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	disk := failingDisk(s)
	if err := s.SetReport(&wire.Report{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	disk.Store(syscall.ENOSPC)
	r2 := &wire.Report{Revision: 2}
	err = s.SetReport(r2)
	if err == nil || Repeated(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("first failure: %v (repeated %v), want a new ENOSPC", err, Repeated(err))
	}
	if s.Report() != r2 {
		t.Fatalf("report revision %d, want 2: check-ins would carry the old one", s.Report().GetRevision())
	}
	r3 := &wire.Report{Revision: 3}
	if err := s.SetReport(r3); err == nil || !Repeated(err) {
		t.Fatalf("the same failure again: %v, want it marked repeated", err)
	}
	if s.Report() != r3 {
		t.Fatal("report is not the newest")
	}
	disk.Store(syscall.EIO)
	if err := s.SetReport(r3); err == nil || Repeated(err) {
		t.Fatalf("another failure: %v, want it told", err)
	}
	// The disk takes it again: the next save (here, an acknowledgement)
	// writes the report kept in memory.
	disk.Store(syscall.Errno(0))
	if err := s.Ack(0); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Report().GetRevision() != 3 {
		t.Fatalf("on disk: revision %d, want 3", s2.Report().GetRevision())
	}
	disk.Store(syscall.ENOSPC)
	if err := s.SetReport(r3); err == nil || Repeated(err) {
		t.Fatalf("a failure after a success: %v, want it told", err)
	}
}

// Runs the disk does not take stay in a bounded queue in memory, go with
// check-ins, and are written (numbers and all) when the disk takes them.
func TestQueueKeepsRunsInMemoryWhenTheDiskFails(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	disk := failingDisk(s)
	if _, err := s.Enqueue(&wire.Report{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	disk.Store(syscall.ENOSPC)
	for i := range 3 {
		r := &wire.Report{Revision: uint64(2 + i)}
		_, err := s.Enqueue(r)
		if err == nil || Repeated(err) != (i > 0) {
			t.Fatalf("run %d: %v (repeated %v)", i+2, err, Repeated(err))
		}
		if r.Seq != uint64(2+i) {
			t.Fatalf("run numbered %d, want %d", r.Seq, 2+i)
		}
		s.SetReport(r)
	}
	if got := seqsOf(backlogOf(s, 64)); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("backlog %v, want runs [1 2 3] (run 4 is the report)", got)
	}
	// Acknowledged runs are forgotten, in memory too.
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(backlogOf(s, 64)); fmt.Sprint(got) != "[3]" {
		t.Fatalf("after ack: backlog %v, want [3]", got)
	}
	// Bounded: the oldest go first.
	dropped := 0
	for range MaxPending + 5 {
		n, _ := s.Enqueue(&wire.Report{})
		dropped += n
	}
	if got := backlogOf(s, 1000); dropped != 7 || len(got) != MaxPending-1 {
		t.Fatalf("dropped %d (want 7), backlog of %d (want %d)", dropped, len(got), MaxPending-1)
	}
	// The disk takes them again.
	disk.Store(syscall.Errno(0))
	r := &wire.Report{}
	if _, err := s.Enqueue(r); err != nil {
		t.Fatal(err)
	}
	s.SetReport(r)
	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	got := backlogOf(s2, 1000)
	if len(got) != MaxPending || got[len(got)-1].GetSeq() != r.Seq-1 {
		t.Fatalf("after restart: backlog of %d ending at %d, want %d ending at %d", len(got), got[len(got)-1].GetSeq(), MaxPending, r.Seq-1)
	}
	if next := (&wire.Report{}); func() bool { s2.Enqueue(next); return next.Seq != r.Seq+1 }() {
		t.Fatalf("next run numbered %d, want %d", next.Seq, r.Seq+1)
	}
}

// A coordinator that holds a run numbered higher than this agent
// remembers (runs numbered while the disk was full, then a restart)
// moves the numbering on: later runs are not taken for ones it has.
func TestAckAheadMovesNumberingOn(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(40); err != nil {
		t.Fatal(err)
	}
	r := &wire.Report{}
	if _, err := s.Enqueue(r); err != nil || r.Seq != 41 {
		t.Fatalf("numbered %d (%v), want 41", r.Seq, err)
	}
}

func seqsOf(rs []*wire.Report) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.GetSeq())
	}
	return out
}
