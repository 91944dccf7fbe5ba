//go:build !unix

package relay

// lockCache does nothing where flock is not available: run one relay per
// cache directory.
func lockCache(string) (func(), error) { return func() {}, nil }
