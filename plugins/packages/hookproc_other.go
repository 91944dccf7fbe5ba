//go:build !unix

package packages

import "os/exec"

// isolateHook leaves the default: the hook process is killed at its limit.
func isolateHook(*exec.Cmd) {}
