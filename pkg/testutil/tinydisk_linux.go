package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TinyDisk mounts a tmpfs of size ("4m") under a fresh directory in /tmp,
// for tests of a full disk, and unmounts it after t. It needs root: the
// test is skipped where mounting is not allowed.
func TinyDisk(t testing.TB, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "outpost-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		os.Remove(dir)
		t.Skipf("mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		os.Remove(dir)
	})
	return dir
}

// FillDisk writes to dir (on a TinyDisk) until its file system is full;
// release frees the space.
func FillDisk(t testing.TB, dir string) (release func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := fh.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	return func() { os.Remove(path) }
}
