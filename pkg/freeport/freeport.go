// Package freeport picks ports for servers that tests, benchmarks and the
// load generator start at an address fixed in advance: a gossip member
// comes back at the same port after a restart, and MinIO, the coordinator
// and the relay are told their address before they start.
//
// A port found by listening on port 0 and closing comes from the kernel's
// ephemeral range, where any connect or bind to port 0 on the machine can
// take it before the server binds it; in CI an agent's own peer-cache
// listener (port 0 on the same address, bound before its gossip) once got
// the very port picked for that agent's gossip. Get picks from below the
// ephemeral range instead, which the kernel never hands out by itself, so
// only another explicit pick of the same port can collide.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// low is the bottom of the range picked from, above the ports of common
// services (and of the demo's fleet).
const low = 15000

// Get returns ip:port with a port that is free on ip for TCP, UDP, or both,
// as asked, and below the kernel's ephemeral range.
func Get(ip string, tcp, udp bool) (string, error) {
	high := ephemeralStart()
	var lastErr error
	for range 100 {
		addr := net.JoinHostPort(ip, strconv.Itoa(low+rand.IntN(high-low)))
		if lastErr = try(addr, tcp, udp); lastErr == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("no free port on %s between %d and %d: %w", ip, low, high, lastErr)
}

// Port is Get's port alone, for servers told a port rather than an
// address.
func Port(ip string, tcp, udp bool) (int, error) {
	addr, err := Get(ip, tcp, udp)
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return strconv.Atoi(port)
}

func try(addr string, tcp, udp bool) error {
	if tcp {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		defer ln.Close()
	}
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		defer pc.Close()
	}
	return nil
}

// ephemeralStart is where the kernel's ephemeral ports begin: Linux's
// ip_local_port_range, else 32768 (Linux's default; other systems start
// higher).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > low+1000 {
				return n
			}
		}
	}
	return 32768
}
