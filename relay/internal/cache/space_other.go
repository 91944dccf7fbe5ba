//go:build !(linux || darwin || freebsd)

package cache

import (
	"errors"
	"syscall"
)

// diskFree cannot tell here: fetches start without a check, and a full
// disk is handled when a write finds it.
func diskFree(string) (int64, error) { return -1, nil }

// isDiskFull reports whether err is a write refused for want of space.
func isDiskFull(err error) bool { return errors.Is(err, syscall.ENOSPC) }
