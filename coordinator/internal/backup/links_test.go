package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// The operator keeps the CA's key on another volume (an encrypted mount,
// an HSM-backed file system) and links it into the data directory:
// ca/ca.key -> /secure/ca.key. The coordinator reads its key through the
// link, but a backup took regular files only and left the link out
// without a word: the backup, "restore --check" and the restore all
// succeeded, and the restored coordinator, finding no CA key, made a new
// CA that no member trusts. A backup either holds the key or fails
// saying why.
func TestKeyKeptThroughASymlinkIsNotLeftOutOfTheBackup(t *testing.T) {
	dir := dataDir(t)
	secure := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(secure, []byte("CA KEY ON ITS OWN VOLUME"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "ca", "ca.key")
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secure, key); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := Write(&buf, source(dir, fakeStore("store")))
	if err != nil {
		if !strings.Contains(err.Error(), "ca/ca.key") {
			t.Fatalf("the backup failed without naming the link: %v", err)
		}
		return
	}
	out := filepath.Join(t.TempDir(), "restored")
	if _, err := Extract(&buf, out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "ca", "ca.key")); err != nil || string(b) != "CA KEY ON ITS OWN VOLUME" {
		t.Fatalf("the backup was written without the CA's key (%q, %v)", b, err)
	}
}

// The data directory is a link to where the space is
// (/var/lib/outpost-coordinator -> /srv/outpost), as data directories
// often are. WalkDir does not follow a link, not even its root: a backup
// held the store and none of the data directory's files (no CA key, no
// policy key, no admin token), and was taken, checked and restored
// without a word; the restored coordinator made a new CA.
func TestBackupOfADataDirThatIsALinkHoldsItsFiles(t *testing.T) {
	real := dataDir(t)
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	m, err := Write(new(bytes.Buffer), source(link, fakeStore("store")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range m.Files {
		got = append(got, f.Path)
	}
	if !strings.Contains(strings.Join(got, " "), "ca/ca.key") || !strings.Contains(strings.Join(got, " "), "admin.token") {
		t.Fatalf("the backup of a linked data directory holds %v", got)
	}
}

// A plain backup given a key is refused: whoever can write where backups
// are kept could swap an encrypted one for a plain one holding keys of
// their own, and a restore that expects encryption must not take it.
func TestAPlainBackupGivenAKeyIsRefused(t *testing.T) {
	plain := take(t, source(dataDir(t), fakeStore("store bytes")))
	id, err := age.NewScryptIdentity("a passphrase for backups")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Extract(bytes.NewReader(plain), filepath.Join(t.TempDir(), "data"), id)
	if err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Fatalf("a plain backup given a passphrase: %v", err)
	}
	if _, err := Extract(bytes.NewReader(plain), filepath.Join(t.TempDir(), "data")); err != nil {
		t.Fatalf("a plain backup without a key: %v", err)
	}
}
