//go:build unix

package plugins

import (
	"os"
	"os/exec"
	"syscall"
)

// isolate puts the plugin in a process group of its own, so that killing it
// also kills whatever it started (an installer, a shell), which would
// otherwise keep its stderr open and the host waiting. On Linux the plugin
// is also killed when the host dies (see dieWithHost): a plugin left
// running by an agent that was killed would otherwise go on changing the
// disk beside the plugin the restarted agent starts.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithHost(cmd.SysProcAttr)
}

// killTree kills the plugin's process group.
func killTree(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}
