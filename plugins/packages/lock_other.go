//go:build (!unix && !windows) || aix

package packages

import "os"

// tryLock takes no lock where the system has no file locks: only the
// Manager's mutex keeps changes apart, within one process.
func tryLock(*os.File) (bool, error) { return true, nil }

func unlockFile(*os.File) {}
