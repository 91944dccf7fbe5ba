//go:build unix

package packages

import "syscall"

// Flags for opening paths in a package's folders, which others may be able
// to write: a fifo put where a file was must not block the open (the file
// is then refused as not regular), and what is opened as a folder must be
// one.
const (
	openNonBlock = syscall.O_NONBLOCK
	openDirOnly  = syscall.O_DIRECTORY
)
