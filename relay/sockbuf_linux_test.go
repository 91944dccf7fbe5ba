package relay

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
	"golang.org/x/sys/unix"
)

// sendBuffer is the kernel's SO_SNDBUF of c.
func sendBuffer(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return n
}

// acceptOne dials a loopback listener and returns the connection wrap(it)
// accepted; both ends are closed when the test ends.
func acceptOne(t *testing.T, wrap func(net.Listener) net.Listener) net.Conn {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := wrap(inner).Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptLAN accepts one loopback client through a lanListener and reports
// the accepted connection's send buffer and whether it was counted as LAN.
func acceptLAN(t *testing.T, sendBuf int, rtt time.Duration) (int, bool) {
	t.Helper()
	var counted []bool
	c := acceptOne(t, func(inner net.Listener) net.Listener {
		return lanListener{Listener: inner, sendBuf: sendBuf, rtt: rtt, counted: func(lan bool) { counted = append(counted, lan) }}
	})
	if len(counted) != 1 {
		t.Fatalf("counted %d times, want once", len(counted))
	}
	return sendBuffer(t, c), counted[0]
}

// A client within the LAN round trip gets the fixed buffer (which Linux
// doubles for its bookkeeping); one farther away, or every client when
// the setting is 0, keeps the kernel's.
func TestLANClientsGetAFixedSendBuffer(t *testing.T) {
	const want = 256 << 10
	if got, lan := acceptLAN(t, want, time.Hour); got != 2*want || !lan {
		t.Errorf("LAN client: SO_SNDBUF %d (counted lan: %v), want %d", got, lan, 2*want)
	}
	if got, lan := acceptLAN(t, want, 0); got == 2*want || lan {
		t.Errorf("a client past the LAN round trip: SO_SNDBUF %d (counted lan: %v), want the kernel's", got, lan)
	}
	if got, lan := acceptLAN(t, 0, time.Hour); got == 2*want || lan {
		t.Errorf("lan_send_buffer_bytes 0: SO_SNDBUF %d (counted lan: %v), want the kernel's", got, lan)
	}
}

// The kernel has measured the handshake's round trip by the time a
// connection is accepted.
func TestHandshakeRTTIsMeasured(t *testing.T) {
	c := acceptOne(t, func(l net.Listener) net.Listener { return l })
	rtt, ok := handshakeRTT(c.(*net.TCPConn))
	if !ok || rtt <= 0 || rtt > time.Second {
		t.Errorf("handshake RTT on loopback: %v (measured: %v)", rtt, ok)
	}
}

// The relay counts its clients by the buffer they were given; on loopback
// they are on the LAN. By default every client keeps autotuning.
func TestRelayCountsLANClients(t *testing.T) {
	data := pattern(10_000)
	cfg := testConfig(t)
	cfg.LANSendBufferBytes = 256 << 10
	tr := startRelay(t, cfg, WithUpstream(newStalled(1<<40, data)))
	if resp, _ := do(t, "GET", tr.url+BlobPath+hashOf(data), nil); resp.StatusCode != 200 {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	lan := tr.metric(t, "outpost_relay_connections_total", "send_buffer", "lan")
	auto := tr.metric(t, "outpost_relay_connections_total", "send_buffer", "autotuned")
	if lan < 1 {
		t.Errorf("connections: %v lan, %v autotuned; want the loopback client counted as lan", lan, auto)
	}

	tr = startRelay(t, testConfig(t), WithUpstream(newStalled(1<<40, data)))
	if resp, _ := do(t, "GET", tr.url+BlobPath+hashOf(data), nil); resp.StatusCode != 200 {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	if lan, auto := tr.metric(t, "outpost_relay_connections_total", "send_buffer", "lan"),
		tr.metric(t, "outpost_relay_connections_total", "send_buffer", "autotuned"); lan != 0 || auto < 1 {
		t.Errorf("by default: connections %v lan, %v autotuned; want every one autotuned", lan, auto)
	}
}

// A client that asks for an artifact and stops reading it has its
// connection ended by the kernel once it has left the relay's bytes
// unread for the stall timeout: the request ends (and with it its
// goroutine, its socket's queued megabytes and its open cache file), here
// within seconds of a 1 s timeout, instead of after TCP's 15 minutes or
// never.
func TestAClientThatStopsReadingIsCutOff(t *testing.T) {
	defer func(was time.Duration) { clientStallTimeout = was }(clientStallTimeout)
	clientStallTimeout = time.Second
	blob := make([]byte, 64<<20)
	tr := startRelay(t, testConfig(t), WithUpstream(newFake(blob)))
	hash := hashOf(blob)
	// Cached first, so that the stalled request is a plain hit.
	if resp, _ := do(t, "GET", tr.url+BlobPath+hash, nil); resp.StatusCode != 200 {
		t.Fatalf("first GET: %d", resp.StatusCode)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive window, so that the relay's sending stalls soon.
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(tr.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: relay\r\n\r\n", BlobPath, hash); err != nil {
		t.Fatal(err)
	}
	ended := func() bool {
		return tr.metric(t, "outpost_relay_http_requests_total", "route", "blob", "code", "200") >= 2
	}
	testutil.Eventually(t, 30*time.Second, ended, "the request of a client that stopped reading is still being served")
}
