//go:build !windows && !darwin

package agent

import "time"

// bootTime is not known here: Linux has its boot id (reboot.go).
func bootTime() (time.Time, bool) { return time.Time{}, false }
