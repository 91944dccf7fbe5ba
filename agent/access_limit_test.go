package agent

import (
	"net"
	"testing"
)

// The direct listener takes at most so many connections from one source
// (an IPv4 address, an IPv6 /64) at once.
func TestSourceConnsLimit(t *testing.T) {
	var c sourceConns
	addr := func(ip string, port int) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: port} }
	var releases []func()
	for i := range 2 {
		r, ok := c.acquire(addr("192.0.2.1", 50000+i), 2)
		if !ok {
			t.Fatalf("connection %d refused", i+1)
		}
		releases = append(releases, r)
	}
	if _, ok := c.acquire(addr("192.0.2.1", 50009), 2); ok {
		t.Fatal("a 3rd connection from 192.0.2.1 was taken")
	}
	if _, ok := c.acquire(addr("::ffff:192.0.2.1", 50009), 2); ok {
		t.Fatal("a 3rd connection from ::ffff:192.0.2.1 was taken")
	}
	if _, ok := c.acquire(addr("192.0.2.2", 50000), 2); !ok {
		t.Fatal("another source was refused")
	}
	releases[1]()
	releases[1]()
	if _, ok := c.acquire(addr("192.0.2.1", 50010), 2); !ok {
		t.Fatal("a connection after one ended was refused")
	}
	if _, ok := c.acquire(addr("192.0.2.1", 50011), 2); ok {
		t.Fatal("release counted twice")
	}
	for i, ip := range []string{"2001:db8::1", "2001:db8::2"} {
		if _, ok := c.acquire(addr(ip, 50000), 2); !ok {
			t.Fatalf("IPv6 connection %d refused", i+1)
		}
	}
	if _, ok := c.acquire(addr("2001:db8::ffff:1", 50000), 2); ok {
		t.Fatal("a 3rd connection from the same /64 was taken")
	}
	if _, ok := c.acquire(addr("2001:db8:0:1::1", 50000), 2); !ok {
		t.Fatal("another /64 was refused")
	}
	releases[0]()
	if c.n["192.0.2.1"] != 1 || c.n["2001:db8::"] != 2 {
		t.Fatalf("counted %v", c.n)
	}
}
