//go:build linux || darwin || freebsd

package cache

import (
	"errors"
	"syscall"
)

// diskFree is what an unprivileged process can still write on the file
// system that holds dir.
func diskFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// isDiskFull reports whether err is a write refused for want of space (a
// full file system, or a quota).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
