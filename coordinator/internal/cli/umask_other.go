//go:build !unix

package cli

import "io/fs"

// newFileMode is the mode a new file gets here.
func newFileMode() fs.FileMode { return 0o644 }
