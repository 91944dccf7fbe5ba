// Package fsutil holds the file-system helpers every part needs to lose
// nothing on a crash: atomic writes and durable renames. It is not a general
// file library.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteFileAtomic writes data to path so that a reader, or a process that
// restarts after a crash, sees either the old file or the whole new one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicOwned(path, data, perm, -1, -1)
}

// WriteFileAtomicOwned is WriteFileAtomic giving the new file the owner
// uid and group gid (-1: the writer's) before it takes path's place, so
// that a file written for someone else stays theirs.
func WriteFileAtomicOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if uid >= 0 || gid >= 0 {
		// Before the mode: chown clears set-id bits.
		if err := f.Chown(uid, gid); err != nil {
			f.Close()
			return fmt.Errorf("write %s: give it its owner: %w", path, err)
		}
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return Rename(tmp, path)
}

// RemoveLeftovers removes what writes of path cut short by a kill left
// beside it (WriteFileAtomic's temporary files) once they are older than
// age (a younger one may be a write under way), and says how many went.
func RemoveLeftovers(path string, age time.Duration) int {
	prefix := "." + filepath.Base(path) + ".tmp-"
	return RemoveOld(filepath.Dir(path), func(name string) bool { return strings.HasPrefix(name, prefix) }, age)
}

// WriteLeftover tells whether name is a temporary file of
// WriteFileAtomic's (".<file>.tmp-<digits>"): a write cut short
// left it, unless one is under way.
func WriteLeftover(name string) bool {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return false
	}
	i := strings.LastIndex(rest, ".tmp-")
	if i <= 0 || i+len(".tmp-") == len(rest) {
		return false
	}
	for _, c := range rest[i+len(".tmp-"):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// RemoveOld removes the regular files of dir whose names match and that
// are older than age, and says how many went.
func RemoveOld(dir string, match func(name string) bool, age time.Duration) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !match(e.Name()) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if fi, err := os.Lstat(name); err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		if os.Remove(name) == nil {
			n++
		}
	}
	return n
}

// Rename moves from to to and syncs the directory so the rename survives a
// power loss.
func Rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("rename %s: %w", to, err)
	}
	return SyncDir(filepath.Dir(to))
}

// SyncDir flushes a directory's entries to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
