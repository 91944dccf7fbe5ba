//go:build !unix

package session

import (
	"os"
	"os/exec"
)

// killGroup leaves the default: cancelling kills the process itself.
func killGroup(cmd *exec.Cmd) {}

// keepOwner does nothing where files have no unix owner.
func keepOwner(*os.File, os.FileInfo) error { return nil }

// lookPath leaves the name to exec, which looks it up on the agent's PATH
// with the extensions the system runs (PATHEXT).
func lookPath(file string, _ []string) (string, error) { return file, nil }
