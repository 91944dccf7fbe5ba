//go:build !windows

package registry

import (
	"fmt"
	"runtime"
)

// registrySupported is whether this build manages the Windows registry.
const registrySupported = false

func newRegistryBackend() (backend, error) {
	return nil, fmt.Errorf("registry keys exist only on Windows, and this host runs %s: %w", runtime.GOOS, ErrNotApplicable)
}
