//go:build unix

package cli

import (
	"io/fs"
	"syscall"
)

// newFileMode is the mode a new file gets here: 0666 less the umask.
func newFileMode() fs.FileMode {
	u := syscall.Umask(0)
	syscall.Umask(u)
	return fs.FileMode(0o666 &^ u)
}
