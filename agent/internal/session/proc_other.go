//go:build !unix

package session

import "os/exec"

// killGroup leaves the default: cancelling kills the process itself.
func killGroup(cmd *exec.Cmd) {}
