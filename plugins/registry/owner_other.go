//go:build !unix

package registry

import "io/fs"

// fileOwner: files here carry no Unix owner to keep.
func fileOwner(fs.FileInfo) (uid, gid int) { return -1, -1 }
