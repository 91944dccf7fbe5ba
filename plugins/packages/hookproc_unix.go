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

// waitHook waits for a started hook to exit and kills what it left running
// in its process group: a process started with "&" would otherwise run on,
// as root, for ever, and one more at each retry. Where the system lets the
// plugin see the hook exit before reaping it (see hookExited), the group
// is killed while the hook, a zombie, still holds its number, so that no
// new process can have taken it.
func waitHook(cmd *exec.Cmd) error {
	pid := cmd.Process.Pid
	if hookExited(pid) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return cmd.Wait()
	}
	err := cmd.Wait()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return err
}
