package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// The disk fills while records are appended: the append that meets the
// end of the disk writes part of its frame and fails. Left in the log,
// those bytes would end it for the reader, and every record appended once
// there was room again (each appended and synced) would be lost at the
// next start. A failed append is cut off again.
func TestRecordsAfterAFailedAppendSurviveARestart(t *testing.T) {
	disk := testutil.TinyDisk(t, "256k")
	dir := filepath.Join(disk, "sessions")
	s := spoolServer(t, dir)
	s.record("tina", "exec", "before", true)
	release := testutil.FillDisk(t, disk)
	path := filepath.Join(dir, spoolFile)
	big := strings.Repeat("x", 1000)
	for i := 0; i < 16; i++ {
		s.record("tina", "exec", fmt.Sprintf("full-%d %s", i, big), true)
		if _, cut, _, err := readSpool(path); err != nil || cut {
			t.Fatalf("after an append on a full disk the log ends in a cut frame (%v)", err)
		}
	}
	release()
	s.record("tina", "exec", "after-1", true)
	s.record("tina", "exec", "after-2", true)
	pending := details(s.PendingAudit())
	if !strings.Contains(pending, "after-1") || !strings.Contains(pending, "after-2") {
		t.Fatalf("pending in memory: %q", pending)
	}
	// Restart (after a kill or a power loss, or an upgrade).
	got := details(spoolServer(t, dir).PendingAudit())
	for _, want := range []string{"before", "after-1", "after-2"} {
		if !strings.Contains(got, want) {
			t.Errorf("after a restart the spool lost %q, appended and synced after the disk had room again", want)
		}
	}
}

// A power loss cuts the last append short, and the host's disk is full
// when it comes back. Writing the spool again without the cut record
// would fail, and the agent would not start (nor check in, nor get the
// policy that would free the disk): the log is cut in place.
func TestSpoolCutShortOnAFullDiskDoesNotStopTheAgent(t *testing.T) {
	disk := testutil.TinyDisk(t, "256k")
	dir := filepath.Join(disk, "sessions")
	s := spoolServer(t, dir)
	s.record("tina", "exec", "a", true)
	s.record("tina", "exec", "b", true)
	path := filepath.Join(dir, spoolFile)
	f, _ := frame(&wire.AuditRecord{Id: "cut", Detail: "c"})
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(f[:len(f)/2])
	fh.Close()
	testutil.FillDisk(t, disk)
	s2, err := New(Config{DataDir: dir, MemberID: "ag-1", Shell: "/bin/sh"}, fixedPolicy{}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("restart after a power loss on a full disk: %v", err)
	}
	if got := details(s2.PendingAudit()); got != "a b" {
		t.Fatalf("kept %q, want %q", got, "a b")
	}
	if _, cut, _, err := readSpool(path); err != nil || cut {
		t.Fatalf("the log still ends in the cut record (%v)", err)
	}
}
