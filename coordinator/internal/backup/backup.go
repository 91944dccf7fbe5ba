// Package backup writes and restores a coordinator's whole state: its
// store, taken in one read transaction while it runs, and every file of
// its data directory (the CA and its key, the policy signing key, the
// token signing key, the admin token).
//
// A backup is a gzip-compressed tar stream: the files, then a manifest
// with each file's size and SHA-256, so that a restore checks all of it
// before it puts anything in place. It is usually encrypted with age
// (age-encryption.org) to public keys or to a passphrase: whoever reads a
// backup holds the keys that sign policy for every computer of the fleet.
package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
)

// Format names this layout in the manifest.
const Format = "outpost-backup-1"

// StoreFile is the store's name in the data directory and in a backup.
const StoreFile = "outpost.db"

// ManifestFile is the last entry of a backup.
const ManifestFile = "manifest.json"

// Bounds a restore holds a backup to: it may come from anywhere.
const (
	maxStoreSize = 64 << 30 // the store
	maxFileSize  = 1 << 20  // every other file: keys, certificates, tokens
	maxFiles     = 1000
	maxManifest  = 1 << 20
)

// Manifest describes a backup.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Version is the coordinator's that wrote it.
	Version string `json:"version"`
	// CAFingerprint is the SHA-256 of the CA certificate: the one every
	// member trusts, so the one a restore must bring back.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	Files         []File `json:"files"`
}

// File is one file of a backup, by its path in the data directory.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Snapshot writes a consistent copy of the store: size is known before
// the first byte, as a tar header needs it.
type Snapshot interface {
	Size() int64
	WriteTo(w io.Writer) (int64, error)
}

// Source is what a backup is taken of.
type Source struct {
	DataDir       string
	Version       string
	CAFingerprint string
	// Store takes the store's snapshot inside fn; the store must not be
	// read from the data directory, where it may be half-written.
	Store func(fn func(Snapshot) error) error
	Now   time.Time
}

// skipped are data-directory files a backup leaves out: the store (taken
// from Store), its lock, and temporary files of atomic writes.
func skipped(rel string) bool {
	base := path.Base(rel)
	return rel == StoreFile || strings.HasPrefix(base, ".") || strings.HasSuffix(base, ".tmp") || strings.HasSuffix(base, ".lock")
}

// Write writes the backup of src to w, encrypted to recipients (none:
// plain). It returns the manifest written.
func Write(w io.Writer, src Source, recipients ...age.Recipient) (*Manifest, error) {
	out := w
	var enc io.WriteCloser
	if len(recipients) > 0 {
		var err error
		if enc, err = age.Encrypt(w, recipients...); err != nil {
			return nil, fmt.Errorf("encrypt the backup: %w", err)
		}
		out = enc
	}
	zw, err := gzip.NewWriterLevel(out, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	m := &Manifest{Format: Format, Created: src.Now.UTC().Truncate(time.Second), Version: src.Version, CAFingerprint: src.CAFingerprint}
	add := func(rel string, size int64, mode int64, write func(io.Writer) error) error {
		if err := tw.WriteHeader(&tar.Header{Name: rel, Size: size, Mode: mode, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		h := sha256.New()
		cw := &CountingWriter{W: io.MultiWriter(tw, h)}
		if err := write(cw); err != nil {
			return fmt.Errorf("back up %s: %w", rel, err)
		}
		if cw.N != size {
			return fmt.Errorf("back up %s: wrote %d bytes of %d", rel, cw.N, size)
		}
		m.Files = append(m.Files, File{Path: rel, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	// The store's copy goes to a file on the local disk first: the read
	// transaction a copy takes blocks the store's growth, so it must not
	// last as long as a slow reader of the backup takes.
	snap, err := os.CreateTemp(src.DataDir, ".backup-store-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("copy the store: %w", err)
	}
	defer func() {
		snap.Close()
		os.Remove(snap.Name())
	}()
	var size int64
	err = src.Store(func(s Snapshot) error {
		n, err := s.WriteTo(snap)
		if err == nil && n != s.Size() {
			err = fmt.Errorf("wrote %d bytes of %d", n, s.Size())
		}
		size = n
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("copy the store: %w", err)
	}
	if _, err := snap.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if err := add(StoreFile, size, 0o600, func(w io.Writer) error { _, err := io.Copy(w, snap); return err }); err != nil {
		return nil, err
	}
	files, err := dataFiles(src.DataDir)
	if err != nil {
		return nil, err
	}
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(src.DataDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", rel, err)
		}
		if err := add(rel, int64(len(b)), 0o600, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return nil, err
		}
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: ManifestFile, Size: int64(len(mb)), Mode: 0o600, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(mb); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// dataFiles lists the regular files of the data directory a backup takes,
// as slash-separated paths, sorted.
func dataFiles(dir string) ([]string, error) {
	// WalkDir does not follow a link, not even its root: a data
	// directory that is one would be backed up without its files.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("list the data directory: %w", err)
	}
	var out []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if skipped(rel) {
			return nil
		}
		if !d.Type().IsRegular() {
			// Left out, a key kept elsewhere through a link would be
			// missing from the restored directory, and the coordinator
			// would make a new CA there that no member trusts.
			return fmt.Errorf("%s is not a regular file (a link?): a backup takes the data directory's files themselves; put the file itself there", rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > maxFileSize {
			return fmt.Errorf("%s is %d bytes: a data directory holds keys and certificates of a few KiB; move other files out of it", p, info.Size())
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the data directory: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// CountingWriter counts what it writes to W.
type CountingWriter struct {
	W io.Writer
	N int64
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}

// ErrNeedsKey is returned for an encrypted backup without an identity or
// passphrase that opens it.
var ErrNeedsKey = errors.New("the backup is encrypted")

// Encrypted says whether a backup starts like an age file; r is read
// again from the start through the reader returned.
func Encrypted(r io.Reader) (bool, io.Reader, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(len(ageHeader))
	if err != nil && !errors.Is(err, io.EOF) {
		return false, br, err
	}
	return bytes.Equal(head, []byte(ageHeader)), br, nil
}

const ageHeader = "age-encryption.org/v1"

// Extract reads a backup from r into dir, which must not exist, checking
// every file against the manifest at its end; identities open an
// encrypted backup, and a plain one given identities is refused. On any
// error, nothing is left in dir.
func Extract(r io.Reader, dir string, identities ...age.Identity) (m *Manifest, err error) {
	enc, r, err := Encrypted(r)
	if err != nil {
		return nil, fmt.Errorf("read the backup: %w", err)
	}
	if !enc && len(identities) > 0 {
		// Whoever can write where backups are kept could put a plain one,
		// holding keys of their own, in place of an encrypted one.
		return nil, errors.New("the backup is not encrypted, though a key or passphrase was given: refused, in case an encrypted backup was swapped for a plain one; if you made it plain, restore it without --identity or a passphrase")
	}
	if enc {
		if len(identities) == 0 {
			return nil, fmt.Errorf("%w: give the identity file of a recipient it was made for, or its passphrase", ErrNeedsKey)
		}
		if r, err = age.Decrypt(r, identities...); err != nil {
			var nm *age.NoIdentityMatchError
			if errors.As(err, &nm) {
				return nil, fmt.Errorf("%w, and not for the identity or passphrase given: %v", ErrNeedsKey, err)
			}
			return nil, fmt.Errorf("decrypt the backup: %w", err)
		}
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("the file is not an Outpost backup (%v)", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	tr := tar.NewReader(zr)
	got := map[string]File{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("the backup is damaged or cut short: %w", err)
		}
		if m != nil {
			return nil, fmt.Errorf("the backup has %q after its manifest", h.Name)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("the backup holds %q, which is not a regular file", h.Name)
		}
		if h.Name == ManifestFile {
			if h.Size > maxManifest {
				return nil, fmt.Errorf("the backup's manifest is %d bytes; the limit is %d", h.Size, maxManifest)
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxManifest))
			if err != nil {
				return nil, fmt.Errorf("the backup is damaged or cut short: %w", err)
			}
			m = &Manifest{}
			if err := json.Unmarshal(b, m); err != nil {
				return nil, fmt.Errorf("the backup's manifest is damaged: %w", err)
			}
			continue
		}
		if err := checkPath(h.Name); err != nil {
			return nil, err
		}
		limit := int64(maxFileSize)
		if h.Name == StoreFile {
			limit = maxStoreSize
		}
		if h.Size < 0 || h.Size > limit {
			return nil, fmt.Errorf("the backup's %s is %d bytes; the limit is %d", h.Name, h.Size, limit)
		}
		if _, dup := got[h.Name]; dup {
			return nil, fmt.Errorf("the backup holds %s twice", h.Name)
		}
		if len(got) >= maxFiles {
			return nil, fmt.Errorf("the backup holds more than %d files", maxFiles)
		}
		f, err := writeFile(tr, dir, h.Name, h.Size)
		if err != nil {
			return nil, err
		}
		got[h.Name] = f
	}
	if m == nil {
		return nil, errors.New("the backup has no manifest: it is cut short, or no Outpost backup")
	}
	if m.Format != Format {
		return nil, fmt.Errorf("the backup's format is %q; this coordinator reads %q", m.Format, Format)
	}
	listed := map[string]bool{}
	for _, f := range m.Files {
		if listed[f.Path] {
			return nil, fmt.Errorf("the backup's manifest lists %s twice: it is damaged", f.Path)
		}
		listed[f.Path] = true
	}
	if len(m.Files) != len(got) {
		return nil, fmt.Errorf("the backup's manifest lists %d files, it holds %d", len(m.Files), len(got))
	}
	for _, want := range m.Files {
		if g, ok := got[want.Path]; !ok || g != want {
			return nil, fmt.Errorf("the backup's %s does not match its manifest: it is damaged", want.Path)
		}
	}
	if _, ok := got[StoreFile]; !ok {
		return nil, fmt.Errorf("the backup holds no %s", StoreFile)
	}
	return m, syncDirs(dir)
}

// checkPath refuses a name that is not a plain relative path inside the
// data directory.
func checkPath(name string) error {
	if name == "" || len(name) > 255 || path.IsAbs(name) || strings.Contains(name, `\`) || path.Clean(name) != name ||
		name == "." || name == ".." || strings.HasPrefix(name, "../") || skipped(name) && name != StoreFile {
		return fmt.Errorf("the backup holds a file named %q, which is not a path inside a data directory", name)
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") {
			return fmt.Errorf("the backup holds a file named %q, which is not a path inside a data directory", name)
		}
	}
	return nil
}

func writeFile(r io.Reader, dir, name string, size int64) (File, error) {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return File{}, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return File{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("the backup is cut short in %s", name)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, fmt.Errorf("restore %s: %w", name, err)
	}
	return File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// syncDirs makes the directory entries of everything written durable.
func syncDirs(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
