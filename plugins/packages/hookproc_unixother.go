//go:build unix && !linux

package packages

import "syscall"

// hookDiesWithPlugin does nothing where there is no parent-death signal.
func hookDiesWithPlugin(*syscall.SysProcAttr) {}

// hookExited does not wait: the hook is reaped before its group is killed.
func hookExited(int) bool { return false }
