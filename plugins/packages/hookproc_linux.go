package packages

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// hookDiesWithPlugin has the kernel send the hook SIGKILL when the thread
// that started it exits, which runHook makes happen only with the plugin
// process: it holds that thread for itself until the hook is reaped.
func hookDiesWithPlugin(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

// hookExited waits until the hook pid has exited, leaving it unreaped
// (WNOWAIT), and reports whether it did so.
func hookExited(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}
