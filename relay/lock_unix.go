//go:build unix

package relay

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockCache takes the cache directory for this process alone: the cache
// clears unfinished downloads at start and evicts as it likes, which two
// processes on one directory (a shared mount, say) would do to each other.
// A second relay on the same directory is refused rather than let in; a
// restart finds the lock gone with the process that held it. On NFS the
// lock needs working file locking (NFSv4, or lockd for v3).
func lockCache(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the cache directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("the cache directory %s is in use by another relay process (pid %s): one relay per cache directory, even on a shared mount: %w",
			dir, trimNL(string(holder)), err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "unknown"
	}
	return s
}
