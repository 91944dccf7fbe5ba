package agent

import (
	"time"

	"golang.org/x/sys/windows"
)

var getTickCount64 = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetTickCount64")

// bootTime is when Windows booted: now less the milliseconds since.
func bootTime() (time.Time, bool) {
	if getTickCount64.Find() != nil {
		return time.Time{}, false
	}
	ms, _, _ := getTickCount64.Call()
	return time.Now().Add(-time.Duration(ms) * time.Millisecond), true
}
