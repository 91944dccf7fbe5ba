package bench

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets the benchmark run its WAN (StartWANProcess) and the clients
// of a warm run between two hosts (TwoHosts.RunHerd) as child processes of
// the same binary.
func TestMain(m *testing.M) {
	if child, err := herdChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, "herd child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(WANChildEnv); spec != "" {
		if err := ServeWANChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "wan child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
