package freeport

import (
	"net"
	"strconv"
	"testing"
)

// A picked port is below the ephemeral range and free for what was asked:
// the caller can bind it.
func TestGetPicksABindablePortBelowTheEphemeralRange(t *testing.T) {
	for _, tc := range []struct{ tcp, udp bool }{{true, false}, {false, true}, {true, true}} {
		addr, err := Get("127.0.0.1", tc.tcp, tc.udp)
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if port < low || port >= ephemeralStart() {
			t.Errorf("port %d, want in [%d, %d)", port, low, ephemeralStart())
		}
		if tc.tcp {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("tcp %s: %v", addr, err)
			}
			ln.Close()
		}
		if tc.udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Fatalf("udp %s: %v", addr, err)
			}
			pc.Close()
		}
	}
}

// A port held for TCP is not given out for TCP.
func TestGetSkipsAPortInUse(t *testing.T) {
	addr, err := Get("127.0.0.1", true, false)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := try(addr, true, false); err == nil {
		t.Fatalf("%s reported free while held", addr)
	}
	for range 200 {
		got, err := Get("127.0.0.1", true, false)
		if err != nil {
			t.Fatal(err)
		}
		if got == addr {
			t.Fatalf("%s given out while held", addr)
		}
	}
}

// Port is the port of an address Get would give.
func TestPort(t *testing.T) {
	port, err := Port("127.0.0.1", true, false)
	if err != nil {
		t.Fatal(err)
	}
	if port < low || port >= ephemeralStart() {
		t.Fatalf("port %d, want in [%d, %d)", port, low, ephemeralStart())
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
