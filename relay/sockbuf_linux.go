package relay

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// handshakeRTT is the round trip the kernel measured for c so far: at
// accept, that of the TCP handshake.
func handshakeRTT(c *net.TCPConn) (time.Duration, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return 0, false
	}
	if info.Rtt == 0 {
		return 0, false // not measured
	}
	return time.Duration(info.Rtt) * time.Microsecond, true
}

// setStallTimeout sets TCP_USER_TIMEOUT: the kernel ends the connection
// when sent bytes stay unacknowledged, or the receiver's window shut, for d.
func setStallTimeout(c *net.TCPConn, d time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	}); err != nil {
		return err
	}
	return serr
}
