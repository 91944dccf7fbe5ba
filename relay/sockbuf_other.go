//go:build !linux

package relay

import (
	"net"
	"time"
)

// handshakeRTT is not read where TCP_INFO is not: every client keeps the
// kernel's autotuning.
func handshakeRTT(*net.TCPConn) (time.Duration, bool) { return 0, false }

// setStallTimeout leaves TCP's own limits where TCP_USER_TIMEOUT is not
// set here.
func setStallTimeout(*net.TCPConn, time.Duration) error { return nil }
