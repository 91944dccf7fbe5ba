package coordinator

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/outposthq/outpost/coordinator/internal/backup"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// errStoreInUse is a store a running coordinator holds.
var errStoreInUse = errors.New("the store is in use")

// RestoreOptions say where and how a backup is restored.
type RestoreOptions struct {
	DataDir string
	// Identities open an encrypted backup: age private keys, or a
	// passphrase (age.NewScryptIdentity).
	Identities []age.Identity
	// Force moves a data directory that holds a coordinator's state aside
	// (to DataDir.before-restore-TIME) instead of refusing.
	Force bool
	Now   time.Time
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Manifest *backup.Manifest
	// MovedAside is where the data directory that was there went; empty
	// when there was none.
	MovedAside string
}

// Restore puts a backup (outpost backup) in place as the data directory,
// with the coordinator stopped. Everything is checked before anything is
// moved; a restore cut short leaves the data directory as it was, or
// (after the old one was moved aside) absent, and running it again
// finishes it. The store is marked as restored, so that the coordinator
// moves each office's revisions past what its members report holding.
func Restore(r io.Reader, opt RestoreOptions) (*RestoreResult, error) {
	dir := filepath.Clean(opt.DataDir)
	if opt.DataDir == "" {
		return nil, errors.New("no data directory: give --data-dir or a configuration with data_dir")
	}
	res := &RestoreResult{}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	case len(entries) > 0:
		// A running coordinator holds its store's lock. Held here until
		// the old directory is moved aside, it also keeps one from
		// starting on the old store while the backup is read.
		unlock, err := lockStore(filepath.Join(dir, backup.StoreFile))
		switch {
		case errors.Is(err, errStoreInUse):
			return nil, fmt.Errorf("stop the coordinator first: %s is in use", filepath.Join(dir, backup.StoreFile))
		case err == nil:
			defer unlock()
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("lock the store: %w", err)
		}
		if !opt.Force {
			return nil, fmt.Errorf("%s is not empty: it holds a coordinator's state; --force moves it aside to %s.before-restore-TIME and restores in its place", dir, dir)
		}
		res.MovedAside = fmt.Sprintf("%s.before-restore-%s", dir, opt.Now.UTC().Format("20060102T150405Z"))
	}
	work := dir + ".restoring"
	if err := os.RemoveAll(work); err != nil { // left by a restore cut short
		return nil, err
	}
	m, err := backup.Extract(r, work, opt.Identities...)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work) // gone by rename unless something failed
	if err := checkBackupCA(work, m); err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(work, backup.StoreFile))
	if err != nil {
		return nil, fmt.Errorf("the backup's store does not open: %w", err)
	}
	err = st.MarkRestored(store.Restored{At: opt.Now.UTC(), BackupMade: m.Created})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("mark the store as restored: %w", err)
	}
	res.Manifest = m
	if res.MovedAside != "" {
		if err := fsutil.Rename(dir, res.MovedAside); err != nil {
			return nil, fmt.Errorf("move the old data directory aside: %w", err)
		}
	} else if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err // an empty directory: its place is taken
	}
	if err := fsutil.Rename(work, dir); err != nil {
		return nil, fmt.Errorf("put the restored data directory in place: %w", err)
	}
	return res, nil
}

// BackupCheck is what CheckBackup found in a backup.
type BackupCheck struct {
	Manifest         *backup.Manifest
	Offices, Members int
}

// CheckBackup opens a backup as a restore would (every file against its
// manifest, the store opened), in a temporary directory that it removes:
// a backup tested this way is one that restores.
func CheckBackup(r io.Reader, identities ...age.Identity) (*BackupCheck, error) {
	tmp, err := os.MkdirTemp("", "outpost-backup-check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	m, err := backup.Extract(r, filepath.Join(tmp, "data"), identities...)
	if err != nil {
		return nil, err
	}
	if err := checkBackupCA(filepath.Join(tmp, "data"), m); err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(tmp, "data", backup.StoreFile))
	if err != nil {
		return nil, fmt.Errorf("the backup's store does not open: %w", err)
	}
	defer st.Close()
	offices, err := st.Offices()
	if err != nil {
		return nil, fmt.Errorf("the backup's store does not read: %w", err)
	}
	members, err := st.Members("")
	if err != nil {
		return nil, fmt.Errorf("the backup's store does not read: %w", err)
	}
	return &BackupCheck{Manifest: m, Offices: len(offices), Members: len(members)}, nil
}

// checkBackupCA checks that the CA certificate a backup holds is the one
// its manifest names, which restore and its check print as the backup's
// CA: installers and CLIs pin it, and a backup made elsewhere, or altered,
// would bring another.
func checkBackupCA(dir string, m *backup.Manifest) error {
	if m.CAFingerprint == "" {
		return nil // made before manifests named it
	}
	ders, _, err := tlsutil.ReadCerts(filepath.Join(dir, "ca", "ca.crt"))
	if err != nil || len(ders) == 0 {
		return fmt.Errorf("the backup's manifest names CA %s, but the backup holds no CA certificate that reads (%v): it is damaged", m.CAFingerprint, err)
	}
	if got := tlsutil.Fingerprint(ders[0]); got != m.CAFingerprint {
		return fmt.Errorf("the backup's CA certificate is %s, not %s as its manifest says: it is damaged, or not the backup it claims to be", got, m.CAFingerprint)
	}
	return nil
}
