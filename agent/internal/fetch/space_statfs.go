//go:build linux || darwin || freebsd || dragonfly

package fetch

import "syscall"

// diskFree is the space an unprivileged writer may still use on the file
// system holding dir.
func diskFree(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	avail := int64(st.Bavail)
	if avail < 0 {
		avail = 0
	}
	return uint64(avail) * uint64(st.Bsize), true
}
