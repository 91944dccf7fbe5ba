package quicsrv

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// runOnLoopback runs s on a free loopback port until the test ends.
func runOnLoopback(t *testing.T, s *Server) context.Context {
	t.Helper()
	s.cfg.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-s.Ready()
	return ctx
}

// memberConn runs s on loopback and dials it as member agent-1 with a
// certificate its CA issued.
func memberConn(t *testing.T, s *Server) (context.Context, *quic.Conn) {
	t.Helper()
	ctx := runOnLoopback(t, s)
	key, der := memberCert(t, s, "agent-1")
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	conf, err := tlsutil.MemberConfig(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }, func() []*x509.Certificate {
		ca, _ := x509.ParseCertificate(s.ca.CertDER())
		return []*x509.Certificate{ca}
	}, wire.ALPNMember)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := quic.DialAddr(dctx, s.Addr().String(), conf, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return ctx, conn
}

// memberCert is a key and a member certificate for id from s's CA.
func memberCert(t *testing.T, s *Server, id string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tlsutil.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := s.ca.IssueMember(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// startFrames opens n streams on conn, each announcing a request of size
// bytes and sending all of it but the last byte (so the coordinator keeps
// waiting for it), until deadline; it counts the bytes the coordinator
// took (QUIC flow control lets through only what it reads, and a window).
func startFrames(t *testing.T, ctx context.Context, conn *quic.Conn, n, size int, deadline time.Time, taken *atomic.Int64, wg *sync.WaitGroup) {
	t.Helper()
	for range n {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(size))
			str.SetWriteDeadline(deadline)
			if _, err := str.Write(hdr[:]); err != nil {
				return
			}
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < size-1; {
				n, err := str.Write(chunk[:min(len(chunk), size-1-sent)])
				sent += n
				taken.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
}

// One enrolled member (a stolen laptop keeps its certificate) may have 64
// streams open on its connection. Were a request of up to MaxMessageSize
// (8 MiB) read on each at once, for up to 30 s, one member would pin
// 512 MiB of the coordinator's memory, and again when the deadline
// passes; a few such members would exhaust it. Only a roll-up member's
// check-in needs megabytes, one at a time: what the coordinator reads of
// one member's unfinished large requests is bounded by two full frames,
// and the large requests beyond them are refused.
func TestOneMemberCannotPinHundredsOfMegabytes(t *testing.T) {
	s, _, _ := checkinServer(t)
	ctx, conn := memberConn(t, s)
	const streams, size = 16, wire.MaxMessageSize
	var taken atomic.Int64
	var wg sync.WaitGroup
	startFrames(t, ctx, conn, streams, size, time.Now().Add(15*time.Second), &taken, &wg)
	wg.Wait()
	// A stream the coordinator does not read takes at most its flow-control
	// window (512 KiB) before the writes stall.
	const bound = 2*size + streams*(512<<10)
	if got := taken.Load(); got > bound {
		t.Fatalf("the coordinator took %d MiB of %d unfinished requests of one member at once (it allows %d streams: %d MiB); want at most %d MiB",
			got>>20, streams, 64, 64*size>>20, bound>>20)
	}
}

// Large requests beyond a connection's budget do not hold up its other
// requests: two 8 MiB requests are read, the ones after them refused at
// once (kept waiting, what they had sent would fill the connection's
// flow-control window and stall every stream), and a check-in sent
// meanwhile is answered at once.
func TestSmallRequestsAreAnsweredWhileLargeOnesAreRead(t *testing.T) {
	s, _, _ := checkinServer(t)
	ctx, conn := memberConn(t, s)
	var taken atomic.Int64
	var wg sync.WaitGroup
	defer func() { conn.CloseWithError(0, ""); wg.Wait() }()
	startFrames(t, ctx, conn, 4, wire.MaxMessageSize, time.Now().Add(20*time.Second), &taken, &wg)
	// Wait until the two the budget allows are nearly read.
	for start := time.Now(); taken.Load() < 2*(wire.MaxMessageSize-(1<<20)); {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("only %d KiB of the large requests read: large requests beyond the budget stall the ones within it", taken.Load()>>10)
		}
		time.Sleep(10 * time.Millisecond)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	str.SetDeadline(start.Add(5 * time.Second))
	if err := wire.WriteMsg(str, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Hostname: "pc-1"}}}); err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := wire.ReadMsg(str, &resp); err != nil {
		t.Fatalf("a check-in sent while large requests are read got no answer in %v: %v", time.Since(start), err)
	}
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a check-in took %v to be answered while large requests were read", took)
	}
}
