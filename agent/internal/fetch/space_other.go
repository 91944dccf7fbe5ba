//go:build !(linux || darwin || freebsd || dragonfly)

package fetch

// diskFree is not known here: fetches are not checked beforehand (a full
// disk still gives a download's bytes back).
func diskFree(string) (uint64, bool) { return 0, false }
