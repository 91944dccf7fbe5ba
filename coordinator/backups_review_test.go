package coordinator_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// An operator turns scheduled backups on (backups.dir, plain or
// recipients) on a coordinator that has none yet. runBackups waited
// 'every' (24h) when backups.dir held no backup, instead of taking one at
// once: the first backup came a day later, and a coordinator restarted
// more often than every (updates, reboots, a crash loop) never took one
// at all, while the operator believes the fleet is backed up (the review
// found it so). No backup in backups.dir is a backup due now.
func TestScheduledBackupIsTakenAtStartWhenThereIsNone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Plain: true}
	}))
	testutil.Eventually(t, 20*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "outpost-backup-*"))
		return len(m) == 1
	}, "a coordinator with backups.dir and no backup yet took none at start (the first is due only after backups.every)")
}

// An operator set backups.dir to a folder of the data directory
// ("next to the rest"). Every backup then took every earlier backup in it
// as a data file, and once one passed the 1 MiB bound of a data file,
// every backup failed (the review found it so). Validate refuses it now.
func TestBackupsDirInsideTheDataDirIsRefused(t *testing.T) {
	cfg := coordinator.DefaultConfig()
	cfg.DataDir = t.TempDir()
	for _, dir := range []string{filepath.Join(cfg.DataDir, "backups"), cfg.DataDir, cfg.DataDir + "/./backups/../backups"} {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Plain: true}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "is inside data_dir") {
			t.Errorf("backups.dir %s: %v", dir, err)
		}
	}
	cfg.Backups.Dir = cfg.DataDir + "-backups"
	if err := cfg.Validate(); err != nil {
		t.Errorf("backups.dir beside data_dir: %v", err)
	}
}
