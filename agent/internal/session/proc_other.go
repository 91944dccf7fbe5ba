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
