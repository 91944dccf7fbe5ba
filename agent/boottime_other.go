//go:build !windows && !darwin

package agent

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// bootTime is when the host booted, from /proc/uptime where there is one
// (Linux); not known elsewhere.
func bootTime() (time.Time, bool) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, false
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	secs, err := strconv.ParseFloat(first, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Now().Add(-time.Duration(secs * float64(time.Second))), true
}
