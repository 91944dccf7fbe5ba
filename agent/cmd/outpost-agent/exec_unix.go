//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

const canExec = true

// restartInto replaces this process with the executable at path. Every
// descriptor Go opened is close-on-exec, so sockets, listeners and the
// data directory's lock go with the old image.
func restartInto(path string, args []string) error {
	err := syscall.Exec(path, append([]string{path}, args...), os.Environ())
	return fmt.Errorf("restart into the new executable %s: %w (the service manager starts it instead)", path, err)
}
