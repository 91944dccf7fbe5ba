package coordinator_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/minio/minio-go/v7"
	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// A coordinator with backups.dir takes a backup at start when none is
// recent, encrypted to the recipients, keeps the newest backups.keep, and
// takes none at a restart while the newest is recent; its metric says when
// the last one was written.
func TestScheduledBackups(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"outpost-backup-20200101T000000Z.tar.gz.age", "outpost-backup-20200102T000000Z.tar.gz.age", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, old), []byte("old"), 0o600)
	}
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Keep: 2, Recipients: []string{id.Recipient().String()}}
	}))
	var backup string
	testutil.Eventually(t, 30*time.Second, func() bool {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		if len(names) == 3 && names[0] == "notes.txt" && names[1] == "outpost-backup-20200102T000000Z.tar.gz.age" && strings.HasSuffix(names[2], ".tar.gz.age") {
			backup = names[2]
			return true
		}
		return false
	}, "no backup, or the old ones not pruned to 2")
	b, err := os.ReadFile(filepath.Join(dir, backup))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(filepath.Join(dir, backup))
	if info.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v", info.Mode().Perm())
	}
	if _, err := coordinator.Restore(bytes.NewReader(b), coordinator.RestoreOptions{DataDir: filepath.Join(t.TempDir(), "data"), Identities: []age.Identity{id}, Now: time.Now()}); err != nil {
		t.Fatalf("the scheduled backup does not restore: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Metric("outpost_coordinator_backup_last_success_timestamp_seconds") > 0 }, "no last-success metric")

	c.Restart()
	time.Sleep(2 * time.Second)
	if files, _ := filepath.Glob(filepath.Join(dir, "outpost-backup-*")); len(files) != 2 {
		t.Fatalf("a restart with a recent backup took another: %v", files)
	}
}

func TestBackupConfigIsChecked(t *testing.T) {
	for in, want := range map[string]coordinator.BackupConfig{
		"give recipients":              {Dir: "/x"},
		"is not an age public key":     {Dir: "/x", Recipients: []string{"age1nope"}},
		"give one":                     {Dir: "/x", Recipients: []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, Plain: true},
		"want 1m or more":              {Dir: "/x", Plain: true, Every: time.Second},
		"no file server is configured": {Dir: "/x", Plain: true, FileServer: true},
		"needs backups.dir":            {Plain: true, FileServer: true},
	} {
		cfg := coordinator.DefaultConfig()
		cfg.Backups = want
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("%+v: %v, want %q", want, err, in)
		}
	}
	cfg := coordinator.DefaultConfig()
	cfg.Backups = coordinator.BackupConfig{Dir: "/x", Plain: true}
	if err := cfg.Validate(); err != nil {
		t.Errorf("plain backups: %v", err)
	}
}

// With backups.file_server, each scheduled backup is copied into the file
// server's bucket under backups/, the oldest there beyond keep deleted.
func TestScheduledBackupsAreCopiedToTheFileServer(t *testing.T) {
	m := testutil.StartMinIO(t)
	dir := filepath.Join(t.TempDir(), "backups")
	bucket := coordinator.DefaultConfig().FileServer.Bucket
	m.MakeBucket(t, bucket)
	client := m.Client(t)
	for _, old := range []string{"outpost-backup-20200101T000000Z.tar.gz", "outpost-backup-20200102T000000Z.tar.gz"} {
		if _, err := client.PutObject(t.Context(), bucket, "backups/"+old, strings.NewReader("old"), 3, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	coordinatortest.New(t, coordinatortest.WithMinIO(m), coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Keep: 2, Plain: true, FileServer: true}
	}))
	var local []string
	testutil.Eventually(t, 30*time.Second, func() bool {
		local, _ = filepath.Glob(filepath.Join(dir, "outpost-backup-*"))
		return len(local) == 1
	}, "no local backup")
	name := filepath.Base(local[0])
	want, _ := os.ReadFile(local[0])
	var keys []string
	testutil.Eventually(t, 30*time.Second, func() bool {
		keys = nil
		for obj := range client.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: "backups/"}) {
			keys = append(keys, obj.Key)
		}
		return slices.Equal(keys, []string{"backups/outpost-backup-20200102T000000Z.tar.gz", "backups/" + name})
	}, "the bucket's backups are %v; want the newest old one and %s", keys, name)
	obj, err := client.GetObject(t.Context(), bucket, "backups/"+name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the bucket's copy: %d bytes (%v), want %d", len(got), err, len(want))
	}
}
