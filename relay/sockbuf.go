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
type lanListener struct {
	net.Listener
	sendBuf int
	rtt     time.Duration
	// counted is told whether each accepted client was given the buffer.
	counted func(lan bool)
}

func (l lanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	lan := false
	if tc, ok := c.(*net.TCPConn); ok && l.sendBuf > 0 {
		if rtt, ok := handshakeRTT(tc); ok && rtt < l.rtt {
			// A failure leaves autotuning, which serves, only less frugally.
			lan = tc.SetWriteBuffer(l.sendBuf) == nil
		}
	}
	if l.counted != nil {
		l.counted(lan)
	}
	return c, nil
}
