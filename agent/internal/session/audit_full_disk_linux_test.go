package session

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
)

// A record made while the disk is full stays in memory; once there is room
// again it reaches the spool on disk with the next record, as the spool
// promises of what it could not write: a restart before the coordinator
// acknowledged it (a crash, an upgrade) must not lose it.
func TestARecordMadeOnAFullDiskSurvivesARestartOnceThereIsRoom(t *testing.T) {
	disk := testutil.TinyDisk(t, "256k")
	dir := filepath.Join(disk, "sessions")
	s := spoolServer(t, dir)
	s.record("tina", "exec", "before", true)
	release := testutil.FillDisk(t, disk)
	want := []string{"before", "after"}
	for i := range 16 { // past what the log's last page still holds
		want = append(want, fmt.Sprintf("during-%d ", i))
		s.record("tina", "exec", want[len(want)-1]+strings.Repeat("x", 1000), true)
	}
	release()
	s.record("tina", "exec", "after", true)
	got := details(spoolServer(t, dir).PendingAudit())
	var lost []string
	for _, want := range want {
		if !strings.Contains(got, want) {
			lost = append(lost, want)
		}
	}
	if len(lost) > 0 {
		t.Errorf("after a restart the spool lost %q", lost)
	}
}
