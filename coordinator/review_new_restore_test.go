package coordinator_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/internal/backup"
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

// Scenario: the disk under the coordinator went bad and its store is
// damaged, which is the very day a restore is for. The operator runs
// 'outpost-coordinator restore --force', which should move the damaged
// directory aside and restore. Restore instead opens the old store to see
// whether a coordinator holds its lock; the damaged file does not open,
// and the restore is refused with "stop the coordinator first", although
// no coordinator runs. Expected: only a held lock (a timeout) refuses;
// a store that does not open for any other reason is moved aside.
func TestReviewRestoreForceReplacesDamagedStore(t *testing.T) {
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

// Scenario: the operator runs 'restore --force' with the coordinator
// stopped; while the backup is read (minutes for a large store), the
// coordinator is started again (systemd Restart=, a colleague, a
// watchdog) and opens the old store. Restore checked the lock only before
// reading, so it then renames the directory the running coordinator uses
// aside and puts the backup in its place: the coordinator goes on serving
// and writing the old state in DIR.before-restore-*, every change it takes
// is lost at its next restart, and the operator is told the restore
// worked. Expected: Restore holds the old store's lock from its check to
// the rename (or checks again just before it), and fails.
func TestReviewRestoreRefusesCoordinatorStartedDuringRestore(t *testing.T) {
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
	// The coordinator starts on the old directory.
	running, err := store.Open(filepath.Join(dir, backup.StoreFile))
	if err != nil {
		t.Fatalf("the coordinator could not open its store: %v", err)
	}
	defer running.Close()
	go func() { pw.Write(b[len(b)/2:]); pw.Close() }()

	r := <-done
	if r.err == nil {
		t.Fatalf("restore succeeded under a running coordinator: it moved the directory the coordinator uses to %s", r.res.MovedAside)
	}
}
