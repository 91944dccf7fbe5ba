package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// fakeStore is a store snapshot of fixed bytes.
type fakeStore []byte

func (f fakeStore) Size() int64                        { return int64(len(f)) }
func (f fakeStore) WriteTo(w io.Writer) (int64, error) { n, err := w.Write(f); return int64(n), err }

// dataDir is a coordinator's data directory as it looks on disk, with the
// files a backup leaves out.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, b := range map[string]string{
		"ca/ca.crt": "CA CERT", "ca/ca.key": "CA KEY", "ca/policy.key": "POLICY KEY", "admin.token": "TOKEN",
		"token.key": "TOKEN KEY", "ca.fingerprint": "FP", StoreFile: "the live store, not copied",
		".admin.token.123.tmp": "half-written", "ca/.hidden": "x",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func source(dir string, st fakeStore) Source {
	return Source{DataDir: dir, Version: "v1.2.3", CAFingerprint: "ab12", Now: time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC),
		Store: func(fn func(Snapshot) error) error { return fn(st) }}
}

func take(t *testing.T, src Source, recipients ...age.Recipient) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Write(&buf, src, recipients...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A backup holds the store's snapshot and the data directory's files, and
// comes back byte for byte: plain, to age public keys, or with a
// passphrase; the wrong key or none opens nothing.
func TestBackupRoundTrip(t *testing.T) {
	dir := dataDir(t)
	snap := fakeStore(bytes.Repeat([]byte("bolt page "), 100_000))
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	pass, _ := age.NewScryptRecipient("correct horse battery staple")
	pass.SetWorkFactor(10)
	passID, _ := age.NewScryptIdentity("correct horse battery staple")
	wrongPass, _ := age.NewScryptIdentity("wrong horse battery staple")

	for name, tc := range map[string]struct {
		to     []age.Recipient
		open   []age.Identity
		errHas string
	}{
		"plain":                       {},
		"to a public key":             {to: []age.Recipient{id.Recipient()}, open: []age.Identity{id}},
		"to two, opened by the other": {to: []age.Recipient{id.Recipient(), other.Recipient()}, open: []age.Identity{other}},
		"with a passphrase":           {to: []age.Recipient{pass}, open: []age.Identity{passID}},
		"without its key":             {to: []age.Recipient{id.Recipient()}, errHas: "the backup is encrypted: give the identity"},
		"with another key":            {to: []age.Recipient{id.Recipient()}, open: []age.Identity{other}, errHas: "not for the identity or passphrase given"},
		"with a wrong passphrase":     {to: []age.Recipient{pass}, open: []age.Identity{wrongPass}, errHas: "not for the identity or passphrase given"},
	} {
		t.Run(name, func(t *testing.T) {
			b := take(t, source(dir, snap), tc.to...)
			if enc, _, _ := Encrypted(bytes.NewReader(b)); enc != (len(tc.to) > 0) {
				t.Fatalf("encrypted = %v", enc)
			}
			out := filepath.Join(t.TempDir(), "restored")
			m, err := Extract(bytes.NewReader(b), out, tc.open...)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("Extract: %v, want %q", err, tc.errHas)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Fatalf("a failed restore left %s: %v", out, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Format != Format || m.Version != "v1.2.3" || m.CAFingerprint != "ab12" || len(m.Files) != 7 {
				t.Fatalf("manifest %+v", m)
			}
			want := map[string]string{StoreFile: string(snap), "ca/ca.crt": "CA CERT", "ca/ca.key": "CA KEY", "ca/policy.key": "POLICY KEY",
				"admin.token": "TOKEN", "token.key": "TOKEN KEY", "ca.fingerprint": "FP"}
			got := map[string]string{}
			filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(p)
					rel, _ := filepath.Rel(out, p)
					got[filepath.ToSlash(rel)] = string(b)
					if info, _ := d.Info(); info.Mode().Perm() != 0o600 {
						t.Errorf("%s has mode %v, want 0600", rel, info.Mode().Perm())
					}
				}
				return nil
			})
			if len(got) != len(want) {
				t.Fatalf("restored files %v", keys(got))
			}
			for p, b := range want {
				if got[p] != b {
					t.Errorf("%s: %d bytes, want %d", p, len(got[p]), len(b))
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// entry is one file of a hand-made backup.
type entry struct {
	name string
	body string
	typ  byte
}

// handMade is a gzipped tar of entries, as a tampered or hostile backup.
func handMade(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Size: int64(len(e.body)), Mode: 0o600, Typeflag: typ}
		if typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func manifestOf(files ...File) string {
	var b strings.Builder
	b.WriteString(`{"format":"` + Format + `","created":"2026-11-28T04:00:00Z","files":[`)
	for i, f := range files {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"path":"` + f.Path + `","size":` + strconv.FormatInt(f.Size, 10) + `,"sha256":"` + f.SHA256 + `"}`)
	}
	b.WriteString("]}")
	return b.String()
}

// dbSHA is not the SHA-256 of "db".
const dbSHA = "a8a4f6e3b4f0c4ea5b8e1a0f3a3d2b1e5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"

// A backup that is cut short, changed, or made to write outside the data
// directory is refused, and nothing is left behind.
func TestBackupRefusesDamagedAndHostileInput(t *testing.T) {
	good := take(t, source(dataDir(t), fakeStore("store bytes")))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff

	for name, tc := range map[string]struct {
		b      []byte
		errHas string
	}{
		"empty":              {nil, "not an Outpost backup"},
		"not gzip":           {[]byte("hello, I am a text file"), "not an Outpost backup"},
		"cut short":          {good[:len(good)*2/3], "damaged or cut short"},
		"a byte changed":     {flipped, ""},
		"no manifest":        {handMade(t, entry{name: StoreFile, body: "db"}), "has no manifest"},
		"parent path":        {handMade(t, entry{name: "../evil", body: "x"}), "not a path inside a data directory"},
		"absolute path":      {handMade(t, entry{name: "/etc/cron.d/evil", body: "x"}), "not a path inside a data directory"},
		"hidden path":        {handMade(t, entry{name: "ca/.x", body: "x"}), "not a path inside a data directory"},
		"unclean path":       {handMade(t, entry{name: "ca//x", body: "x"}), "not a path inside a data directory"},
		"a symlink":          {handMade(t, entry{name: "ca/ca.key", typ: tar.TypeSymlink}), "not a regular file"},
		"twice":              {handMade(t, entry{name: "admin.token", body: "a"}, entry{name: "admin.token", body: "b"}), "holds admin.token twice"},
		"after the manifest": {handMade(t, entry{name: ManifestFile, body: manifestOf()}, entry{name: "x", body: "y"}), "after its manifest"},
		"unknown format":     {handMade(t, entry{name: ManifestFile, body: `{"format":"other","files":[]}`}), `format is "other"`},
		"a file not listed":  {handMade(t, entry{name: StoreFile, body: "db"}, entry{name: ManifestFile, body: manifestOf()}), "lists 0 files, it holds 1"},
		"a wrong hash":       {handMade(t, entry{name: StoreFile, body: "db"}, entry{name: ManifestFile, body: manifestOf(File{Path: StoreFile, Size: 2, SHA256: dbSHA})}), "does not match its manifest"},
		"no store":           {handMade(t, entry{name: ManifestFile, body: manifestOf()}), "holds no outpost.db"},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "restored")
			_, err := Extract(bytes.NewReader(tc.b), out)
			if err == nil || tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Extract: %v, want an error with %q", err, tc.errHas)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("a refused restore left %s", out)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(out), "evil")); !os.IsNotExist(err) {
				t.Fatal("a file was written outside the data directory")
			}
		})
	}
}

// A data directory holding something that is no key or certificate (a
// log, a copy of the store) is not backed up silently.
func TestBackupRefusesLargeFilesInTheDataDirectory(t *testing.T) {
	dir := dataDir(t)
	os.WriteFile(filepath.Join(dir, "coordinator.log"), bytes.Repeat([]byte("x"), maxFileSize+1), 0o600)
	if _, err := Write(io.Discard, source(dir, fakeStore("db"))); err == nil || !strings.Contains(err.Error(), "move other files out of it") {
		t.Fatalf("Write: %v", err)
	}
}

var errTest = errors.New("disk on fire")

// A store that fails mid-snapshot fails the backup.
func TestBackupFailsWithItsStore(t *testing.T) {
	src := source(dataDir(t), nil)
	src.Store = func(func(Snapshot) error) error { return errTest }
	if _, err := Write(io.Discard, src); !errors.Is(err, errTest) {
		t.Fatalf("Write: %v", err)
	}
}
