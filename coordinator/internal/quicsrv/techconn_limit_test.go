package quicsrv

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

func TestConnLimitBySource(t *testing.T) {
	var l connLimit
	v4 := func(s string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(s), Port: 40000} }
	var releases []func()
	for i := range 3 {
		r, ok := l.acquire(&net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000 + i}, 3)
		if !ok {
			t.Fatalf("connection %d refused", i+1)
		}
		releases = append(releases, r)
	}
	if _, ok := l.acquire(v4("192.0.2.1"), 3); ok {
		t.Fatal("a 4th connection from 192.0.2.1 was taken")
	}
	// The same address as an IPv4-mapped IPv6 one is the same source.
	if _, ok := l.acquire(v4("::ffff:192.0.2.1"), 3); ok {
		t.Fatal("a 4th connection from ::ffff:192.0.2.1 was taken")
	}
	if _, ok := l.acquire(v4("192.0.2.2"), 3); !ok {
		t.Fatal("another source was refused")
	}
	releases[0]()
	releases[0]() // twice is once
	if _, ok := l.acquire(v4("192.0.2.1"), 3); !ok {
		t.Fatal("a connection after one ended was refused")
	}
	if _, ok := l.acquire(v4("192.0.2.1"), 3); ok {
		t.Fatal("release counted twice")
	}

	// IPv6: one /64 is one source.
	for i := range 3 {
		if _, ok := l.acquire(v4("2001:db8:1:2::"+string(rune('a'+i))), 3); !ok {
			t.Fatalf("IPv6 connection %d refused", i+1)
		}
	}
	if _, ok := l.acquire(v4("2001:db8:1:2:ffff::1"), 3); ok {
		t.Fatal("a 4th connection from the same /64 was taken")
	}
	if _, ok := l.acquire(v4("2001:db8:1:3::1"), 3); !ok {
		t.Fatal("another /64 was refused")
	}
}

// Over QUIC: one source holds at most maxTechConnsPerSource technician
// connections; the next is closed with the reason, and once one ends a
// new one is taken.
// limitServer runs a QUIC server on loopback for the connection-limit
// tests and gives a dialer for protocol alpn and a check of refusals.
func limitServer(t *testing.T, alpn string) (s *Server, ctx context.Context, dial func() *quic.Conn, refused func(*quic.Conn) bool) {
	s, _, _ = checkinServer(t)
	s.cfg.Addr = "127.0.0.1:0"
	// Dialling 129 connections on a loaded machine can take longer than
	// an enrolment connection may wait for its request: the first ones
	// would end, and make room, before the last is dialled.
	s.enrollWait = 5 * time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	<-s.Ready()
	tlsConf, err := tlsutil.PinnedConfig(s.ca.Fingerprint(), alpn)
	if err != nil {
		t.Fatal(err)
	}
	dial = func() *quic.Conn {
		t.Helper()
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		c, err := quic.DialAddr(dctx, s.Addr().String(), tlsConf, &quic.Config{MaxIdleTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// refused says whether the coordinator closed c for too many
	// connections: a connection it took stays open, waiting for its
	// first message. The wait is long enough for a loaded 2-core machine
	// (2 s once missed a refusal while other tests ran).
	refused = func(c *quic.Conn) bool {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		select {
		case <-c.Context().Done():
		case <-rctx.Done():
			return false
		}
		var appErr *quic.ApplicationError
		if !errors.As(context.Cause(c.Context()), &appErr) || appErr.ErrorCode != 1 {
			t.Fatalf("connection closed with %v, want the limit's application error", context.Cause(c.Context()))
		}
		return true
	}
	return s, ctx, dial, refused
}

// heldUntil waits until l counts n connections: a client's dial returns
// before the server has taken the connection (its handshake ends on the
// server last, and connections are served in goroutines of their own), so
// without the wait the next dial may be counted before one of these.
func heldUntil(t *testing.T, l *connLimit, n int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		held := 0
		for _, k := range l.n {
			held += k
		}
		return held == n
	}, "the server did not take the %d connections dialled", n)
}

func TestTechnicianConnectionsPerSource(t *testing.T) {
	s, ctx, dial, refused := limitServer(t, wire.ALPNTechnician)

	var conns []*quic.Conn
	for range maxTechConnsPerSource {
		conns = append(conns, dial())
	}
	heldUntil(t, &s.techConns, maxTechConnsPerSource)
	// Each taken connection holds a stream that announced a large
	// SessionOpen: they cost the coordinator nothing of that size.
	for _, c := range conns {
		str, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], wire.MaxSessionOpenSize+1)
		if _, err := str.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
		// Oversize: the stream is ended at once, without waiting for the
		// body and without an answer.
		str.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(str)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("an oversize SessionOpen was not refused at once")
		}
		if len(b) != 0 {
			t.Fatalf("an oversize SessionOpen was answered with %d bytes", len(b))
		}
	}
	extra := dial()
	if !refused(extra) {
		t.Fatalf("connection %d from one source was taken", maxTechConnsPerSource+1)
	}
	if !t.Failed() && refused(conns[0]) {
		t.Fatal("a connection within the limit was closed")
	}
	conns[0].CloseWithError(0, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial()
		if !refused(c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a new connection is still refused after one ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Enrolment connections are unauthenticated too: one source holds at most
// maxEnrollConnsPerSource of them, and the next is closed with the reason.
func TestEnrollConnectionsPerSource(t *testing.T) {
	s, _, dial, refused := limitServer(t, wire.ALPNEnroll)
	var conns []*quic.Conn
	for range maxEnrollConnsPerSource {
		conns = append(conns, dial())
	}
	heldUntil(t, &s.enrollConns, maxEnrollConnsPerSource)
	extra := dial()
	if !refused(extra) {
		t.Fatalf("enrolment connection %d from one source was taken", maxEnrollConnsPerSource+1)
	}
	var appErr *quic.ApplicationError
	if errors.As(context.Cause(extra.Context()), &appErr) && !strings.Contains(appErr.ErrorMessage, "too many enrolments") {
		t.Fatalf("refused with %q, want the reason", appErr.ErrorMessage)
	}
	if refused(conns[0]) {
		t.Fatal("an enrolment connection within the limit was closed")
	}
	for _, c := range conns {
		c.CloseWithError(0, "")
	}
	deadline := time.Now().Add(5 * time.Second)
	for refused(dial()) {
		if time.Now().After(deadline) {
			t.Fatal("a new enrolment connection is still refused after the others ended")
		}
	}
}
