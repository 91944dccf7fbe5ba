package agent

import (
	"testing"
	"time"
)

// On Linux the host's boot time comes from /proc/uptime, so inventory
// tells the host's uptime, not the agent's.
func TestBootTimeOnLinux(t *testing.T) {
	boot, ok := bootTime()
	if !ok || !boot.Before(time.Now()) || time.Since(boot) > 10*365*24*time.Hour {
		t.Fatalf("bootTime = %v, %v", boot, ok)
	}
}
