//go:build unix

package coordinator

import (
	"errors"
	"os"
	"syscall"
)

// lockStore takes the lock a coordinator holds on its store (bbolt's
// flock), so that none starts on it meanwhile; errStoreInUse when one
// holds it. The file's content does not matter: a damaged store locks too.
func lockStore(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errStoreInUse
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
