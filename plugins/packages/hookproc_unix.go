//go:build unix

package packages

import (
	"os/exec"
	"syscall"
)

// isolateHook runs a hook in a process group of its own and kills the whole
// group at the time limit, so that what the hook started dies with it. On
// Linux the hook is also killed if the plugin dies (see hookDiesWithPlugin),
// so that a plugin killed by the agent does not leave a hook running that
// the next plugin will run again.
func isolateHook(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	hookDiesWithPlugin(cmd.SysProcAttr)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
