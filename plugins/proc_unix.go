//go:build unix

package plugins

import (
	"os"
	"os/exec"
	"syscall"
)

// isolate puts the plugin in a process group of its own, so that killing it
// also kills whatever it started (an installer, a shell), which would
// otherwise keep its stderr open and the host waiting.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killTree kills the plugin's process group.
func killTree(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}
