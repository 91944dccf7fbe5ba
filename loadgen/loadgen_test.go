package loadgen

import (
	"net"
	"testing"
)

func TestNextIP(t *testing.T) {
	first := net.ParseIP("127.0.1.1").To4()
	for i, want := range map[int]string{0: "127.0.1.1", 249: "127.0.1.250", 250: "127.0.2.1", 1999: "127.0.8.250"} {
		if got := nextIP(first, i).String(); got != want {
			t.Errorf("nextIP(%d) = %s, want %s", i, got, want)
		}
	}
}
