package coordinator_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/internal/backup"
	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// reviewDataDir makes a data directory as a coordinator leaves it: a
// store with an office, and a key file.
func reviewDataDir(t *testing.T, office string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, backup.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOffice(store.Office{Name: office}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token.key"), []byte("key of "+office), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// reviewBackup is a plain backup of a data directory holding office.
func reviewBackup(t *testing.T, office string) []byte {
	t.Helper()
	dir := reviewDataDir(t, office)
	st, err := store.Open(filepath.Join(dir, backup.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var buf bytes.Buffer
	_, err = backup.Write(&buf, backup.Source{DataDir: dir, Version: "test", Now: time.Now(),
		Store: func(fn func(backup.Snapshot) error) error {
			return st.Snapshot(func(s store.Snapshot) error { return fn(s) })
		}})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The disk under the coordinator went bad and its store is
// damaged, which is the very day a restore is for. The operator runs
// 'outpost-coordinator restore --force', which should move the damaged
// directory aside and restore. Restore opened the old store to see
// whether a coordinator held its lock; the damaged file did not open, and
// the restore was refused with "stop the coordinator first", although no
// coordinator ran (the review found it so). It now takes the store's lock
// itself, which a damaged file takes as well as any.
func TestRestoreForceReplacesADamagedStore(t *testing.T) {
	b := reviewBackup(t, "hq")
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("bad sector "), 4096)
	if err := os.WriteFile(filepath.Join(dir, backup.StoreFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := coordinator.Restore(bytes.NewReader(b), coordinator.RestoreOptions{DataDir: dir, Force: true, Now: time.Now()})
	if err != nil {
		t.Fatalf("restore --force over a damaged store: %v", err)
	}
	if res.MovedAside == "" {
		t.Fatal("the damaged directory was not kept aside")
	}
}

// The operator runs 'restore --force' with the coordinator stopped;
// while the backup is read (minutes for a large store), the coordinator
// is started again (systemd Restart=, a colleague, a watchdog). Restore
// checked the lock only before reading, so it renamed the directory the
// running coordinator used aside and put the backup in its place, while
// the coordinator went on writing the old state (the review found it so).
// Restore now holds the old store's lock from its check to the rename: a
// coordinator started meanwhile cannot open its store, and the one started
// after the restore opens the restored one.
func TestCoordinatorStartedDuringARestoreWaitsForIt(t *testing.T) {
	b := reviewBackup(t, "restored")
	dir := reviewDataDir(t, "old")

	pr, pw := io.Pipe()
	type result struct {
		res *coordinator.RestoreResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := coordinator.Restore(pr, coordinator.RestoreOptions{DataDir: dir, Force: true, Now: time.Now()})
		done <- result{res, err}
	}()
	// Restore has consumed the first half: it is past its check.
	if _, err := pw.Write(b[:len(b)/2]); err != nil {
		t.Fatal(err)
	}
	// A coordinator starting on the old directory does not get its store.
	if running, err := store.Open(filepath.Join(dir, backup.StoreFile)); err == nil {
		running.Close()
		t.Fatal("a coordinator opened the old store while the restore ran")
	}
	go func() { pw.Write(b[len(b)/2:]); pw.Close() }()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	st, err := store.Open(filepath.Join(dir, backup.StoreFile))
	if err != nil {
		t.Fatalf("the coordinator started after the restore: %v", err)
	}
	defer st.Close()
	if _, err := st.Office("restored"); err != nil {
		t.Fatalf("the store after the restore: %v", err)
	}
}

// A backup whose CA certificate is not the one its manifest names (made
// elsewhere and relabelled, or altered) is refused by the check and by
// restore: both print the manifest's fingerprint as the backup's CA, which
// installers and CLIs pin.
func TestABackupWhoseCAIsNotItsManifestsIsRefused(t *testing.T) {
	dir := reviewDataDir(t, "hq")
	authority, err := ca.LoadOrCreate(filepath.Join(dir, "ca"), nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, backup.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	take := func(fp string) []byte {
		var buf bytes.Buffer
		if _, err := backup.Write(&buf, backup.Source{DataDir: dir, Version: "test", Now: time.Now(), CAFingerprint: fp,
			Store: func(fn func(backup.Snapshot) error) error {
				return st.Snapshot(func(s store.Snapshot) error { return fn(s) })
			}}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good, relabelled := take(authority.Fingerprint()), take("sha256:"+strings.Repeat("ab", 32))
	st.Close()
	if _, err := coordinator.CheckBackup(bytes.NewReader(good)); err != nil {
		t.Fatalf("a backup of the CA its manifest names: %v", err)
	}
	if _, err := coordinator.CheckBackup(bytes.NewReader(relabelled)); err == nil || !strings.Contains(err.Error(), "as its manifest says") {
		t.Fatalf("check of a relabelled backup: %v", err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := coordinator.Restore(bytes.NewReader(relabelled), coordinator.RestoreOptions{DataDir: target, Now: time.Now()}); err == nil || !strings.Contains(err.Error(), "as its manifest says") {
		t.Fatalf("restore of a relabelled backup: %v", err)
	}
}
