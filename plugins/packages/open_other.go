//go:build !unix

package packages

// There are no fifos to fear where there is no unix (see open_unix.go).
const (
	openNonBlock = 0
	openDirOnly  = 0
)
