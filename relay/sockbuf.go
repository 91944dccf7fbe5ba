package relay

import (
	"net"
	"time"
)

// lanListener gives each accepted client on the local network (a TCP
// handshake under rtt) a fixed send buffer of sendBuf bytes instead of the
// kernel's autotuning. On loopback, where the sender's system calls run
// the receiver's TCP work too, a 256 KiB buffer made 64 clients of warm
// hits 1.2–1.35× faster; between two emulated hosts it was slower than
// autotuning (0.93× by the median of 18 measurements), so it is off
// unless configured (README, Performance).
// Run uses it over plain HTTP only. Clients farther away keep autotuning,
// which a long fat path needs to fill. A sendBuf of 0 leaves every client
// to autotuning.
//
// It also gives every client stall as TCP_USER_TIMEOUT (where the kernel
// has it): the kernel ends a connection whose sent bytes go unacknowledged,
// or whose receiver keeps its window shut, that long. A client that stops
// reading (asleep, gone, or holding connections open on purpose) would
// otherwise hold a goroutine, a socket with megabytes queued and an open
// cache file until TCP gave up (some 15 minutes), or for as long as its
// kernel answers.
type lanListener struct {
	net.Listener
	sendBuf int
	rtt     time.Duration
	stall   time.Duration
	// counted is told whether each accepted client was given the buffer.
	counted func(lan bool)
}

func (l lanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	lan := false
	if tc, ok := c.(*net.TCPConn); ok {
		if l.sendBuf > 0 {
			if rtt, ok := handshakeRTT(tc); ok && rtt < l.rtt {
				// A failure leaves autotuning, which serves, only less frugally.
				lan = tc.SetWriteBuffer(l.sendBuf) == nil
			}
		}
		if l.stall > 0 {
			// A failure leaves TCP's own limits.
			_ = setStallTimeout(tc, l.stall)
		}
	}
	if l.counted != nil {
		l.counted(lan)
	}
	return c, nil
}
