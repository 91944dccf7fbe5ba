//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

const canExec = true

// runningImagePath runs the image this process runs, even once its file
// is replaced (Linux); elsewhere the path it was started by.
var runningImagePath = "/proc/self/exe"

// restartInto replaces this process with the executable at path. Every
// descriptor Go opened is close-on-exec, so sockets and listeners go with
// the old image (the agent stopped its plugins and left its office's
// gossip before).
func restartInto(path string, args []string) error {
	err := syscall.Exec(path, append([]string{path}, args...), os.Environ())
	return fmt.Errorf("restart into the new executable %s: %w (the service manager starts it instead)", path, err)
}
