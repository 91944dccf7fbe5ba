//go:build !unix

package packages

import "os/exec"

// isolateHook leaves the default: the hook process is killed at its limit.
func isolateHook(*exec.Cmd) {}

// waitHook waits for the hook to exit; there is no process group to end.
func waitHook(cmd *exec.Cmd) error { return cmd.Wait() }
