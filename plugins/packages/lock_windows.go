//go:build windows

package packages

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockRange is the byte the lock covers: past anything written to the file,
// so that a waiting process can still read who holds it.
var lockRange = windows.Overlapped{OffsetHigh: 1}

// tryLock locks f exclusively without waiting; false means another open
// file (another process) holds it.
func tryLock(f *os.File) (bool, error) {
	ol := lockRange
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return false, nil
	}
	return false, err
}

func unlockFile(f *os.File) {
	ol := lockRange
	_ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
