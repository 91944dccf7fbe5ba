package quicsrv

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// streamPairs gives n pairs of streams over one real QUIC connection on
// loopback, the server's end and the client's of each, and the client's
// connection.
func streamPairs(t *testing.T, n int) (server, client []*quic.Stream, conn *quic.Conn) {
	t.Helper()
	s, _, _ := checkinServer(t)
	cert := s.ca.ServerCertificate()
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"splice-test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conf, err := tlsutil.PinnedConfig(s.ca.Fingerprint(), "splice-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err = quic.DialAddr(ctx, ln.Addr().String(), conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	sconn, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		c, err := conn.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{0}); err != nil { // so that the server hears of it
			t.Fatal(err)
		}
		sv, err := sconn.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sv.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		server, client = append(server, sv), append(client, c)
	}
	return server, client, conn
}

// A brokered session whose technician goes away while the host is not
// reading the session's input (a command that ignores its stdin, its
// stream's flow control full) and is writing nothing: the broker tells the
// host at once (its stream is reset both ways), so that the host ends the
// session, instead of the copy toward the host waiting for ever.
func TestTheBrokerTellsTheHostWhenItsTechnicianIsGone(t *testing.T) {
	// Two connections: the technician's, and the host's.
	techServer, techClient, techConn := streamPairs(t, 1)
	hostServer, hostClient, _ := streamPairs(t, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		splice(context.Background(), techServer[0], hostServer[0])
	}()
	// The technician types far more than the host reads.
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := techClient[0].Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	techConn.CloseWithError(0, "the technician's laptop is gone")
	select {
	case <-hostClient[0].Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the host's stream goes on after its technician left")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker's splice goes on after the technician left")
	}
}
