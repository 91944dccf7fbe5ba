//go:build unix && !linux

package packages

import "syscall"

// hookDiesWithPlugin does nothing where there is no parent-death signal.
func hookDiesWithPlugin(*syscall.SysProcAttr) {}
