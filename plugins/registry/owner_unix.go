//go:build unix

package registry

import (
	"io/fs"
	"syscall"
)

// fileOwner is fi's owner and group, -1 each where it cannot tell.
func fileOwner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// oNonblock keeps opening a settings file from waiting for ever on a FIFO
// swapped in where the file was.
const oNonblock = syscall.O_NONBLOCK
