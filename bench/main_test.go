package bench

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets the benchmark run its WAN as a child process of the same
// binary (StartWANProcess).
func TestMain(m *testing.M) {
	if spec := os.Getenv(WANChildEnv); spec != "" {
		if err := ServeWANChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "wan child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
