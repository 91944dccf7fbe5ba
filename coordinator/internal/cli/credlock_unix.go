//go:build unix

package cli

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// lockSignIn holds the sign-in at path for this process while it refreshes
// it: a refresh token is spent on use, and two commands refreshing at
// once (a loop over hosts, two terminals) would present it twice, which
// revokes the whole sign-in. It waits for another holder until ctx ends.
func lockSignIn(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
