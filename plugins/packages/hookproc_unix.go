//go:build unix

package packages

import (
	"os/exec"
	"syscall"
)

// isolateHook runs a hook in a process group of its own and kills the whole
// group at the time limit, so that what the hook started dies with it.
func isolateHook(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
