//go:build unix

package session

import (
	"os"
	"os/exec"
	"syscall"
)

// killGroup makes cancelling cmd kill its whole process group, so that a
// shell's children end with the session.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// keepOwner gives f the owner and group of the file it replaces, as cp
// does: a file a service owns stays its own.
func keepOwner(f *os.File, old os.FileInfo) error {
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		return f.Chown(int(st.Uid), int(st.Gid))
	}
	return nil
}
