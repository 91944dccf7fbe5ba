package packages

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// Installed returns the manifest of package name installed under root, or
// nil when it is not installed. Other plugins (patch) read it to learn what
// is there; only this package writes it.
func Installed(root, name string) (*Manifest, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return store{root: root}.load(name)
}

// Backup writes the files of an installed package, as its manifest lists
// them, into a .tar.gz at dst whose entries are relative to the package's
// prefix: the same shape as the archive it was installed from, so that
// installing it again puts the package back as it is now.
//
// The package's directories may be writable by others (a 0777 spool the
// archive asked for), so what is at a file's path is not trusted: every
// file is read through an os.Root at the prefix, must be a regular file,
// not a symlink, and must have the size and SHA-256 its manifest records.
// Anything else refuses the backup, and dst is removed, rather than copy
// whatever a link points to into an archive that rollback installs as the
// package's own file.
func Backup(root string, mf *Manifest, dst string) (err error) {
	// Written beside dst and renamed into place once whole and synced (the
	// directory too): a kill or a power loss leaves the backup there was,
	// or none, never a part.
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(mf.prefixRel())))
	if err != nil {
		return fmt.Errorf("back up %s: open prefix %s: %w (verify and repair the package first)", mf.Name, mf.Prefix, err)
	}
	defer pr.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, file := range mf.Files {
		rel, ok := mf.inPrefix(file.Path)
		if !ok {
			return fmt.Errorf("back up %s: %s is outside its prefix", mf.Name, file.Path)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(file.Mode)}
		if file.Link != "" {
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, file.Link
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("back up %s: %w", mf.Name, err)
			}
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, file.Size
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("back up %s: %w", mf.Name, err)
		}
		if err := backupFile(pr, filepath.FromSlash(rel), file, tw); err != nil {
			return fmt.Errorf("back up %s: %w; verify and repair the package first (apply its package item), then retry", mf.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	if err := fsutil.Rename(tmp, dst); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	return nil
}

// backupFile copies the regular file name (prefix-relative) to w, and fails
// unless it is exactly f. The file opened is checked to be the one Lstat
// saw, so a swap for a symlink between the two is caught; the hash is taken
// of the bytes copied, so a change while copying is too.
func backupFile(pr *os.Root, name string, f File, w io.Writer) error {
	lfi, err := pr.Lstat(name)
	if err != nil {
		return fmt.Errorf("file /%s: %w", f.Path, err)
	}
	if !lfi.Mode().IsRegular() {
		return fmt.Errorf("file /%s has been replaced by a %s", f.Path, typeName(lfi.Mode()))
	}
	in, err := openRegular(pr, name)
	if err != nil {
		return fmt.Errorf("file /%s: %w", f.Path, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("file /%s: %w", f.Path, err)
	}
	if !fi.Mode().IsRegular() || !os.SameFile(lfi, fi) {
		return fmt.Errorf("file /%s changed while it was being backed up", f.Path)
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("file /%s has been modified (%d bytes, want %d)", f.Path, fi.Size(), f.Size)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(in, f.Size))
	if err != nil {
		return fmt.Errorf("file /%s: %w", f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("file /%s changed while it was being backed up (%d bytes, want %d)", f.Path, n, f.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
		return fmt.Errorf("file /%s has been modified (sha256 %s, want %s)", f.Path, short(sum), short(f.SHA256))
	}
	return nil
}
