//go:build !unix

package plugins

import (
	"os"
	"os/exec"
)

// isolate does nothing where there are no process groups.
func isolate(*exec.Cmd) {}

// killTree kills the plugin process.
func killTree(p *os.Process) { _ = p.Kill() }
