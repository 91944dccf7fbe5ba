package packages

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
func Backup(root string, mf *Manifest, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, file := range mf.Files {
		rel, ok := mf.inPrefix(file.Path)
		if !ok {
			return fmt.Errorf("back up %s: %s is outside its prefix", mf.Name, file.Path)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(file.Mode)}
		src := filepath.Join(root, filepath.FromSlash(file.Path))
		if file.Link != "" {
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, file.Link
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("back up %s: %w", mf.Name, err)
			}
			continue
		}
		in, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("back up %s: %w (verify and repair the package first)", mf.Name, err)
		}
		fi, err := in.Stat()
		if err != nil {
			in.Close()
			return fmt.Errorf("back up %s: %w", mf.Name, err)
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			in.Close()
			return fmt.Errorf("back up %s: %w", mf.Name, err)
		}
		_, err = io.Copy(tw, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("back up %s: %s: %w", mf.Name, strings.TrimPrefix(file.Path, "/"), err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("back up %s: %w", mf.Name, err)
	}
	return f.Sync()
}
