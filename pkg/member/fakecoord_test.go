package member

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// fakeCoordinator is a QUIC server on loopback that speaks the member
// protocol as far as these tests need: it accepts members of its CA,
// answers each request with an Ack (or what answer returns), and lets a
// test drop connections, open streams toward members, and count
// handshakes.
type fakeCoordinator struct {
	ca   *testCA
	addr string
	// hellos counts handshakes begun (a ClientHello arrived).
	hellos atomic.Int64
	// answer, when set, answers a request (it may block).
	answer func(ctx context.Context, req *wire.Request) *wire.Response

	mu         sync.Mutex
	conns      []*quic.Conn
	acceptedAt []time.Time
	// accepted is closed and replaced at each connection accepted.
	accepted chan struct{}
}

// startFakeCoordinator starts a fake coordinator on 127.0.0.1; refuse
// makes it show a certificate of another CA, so that every handshake
// fails at once.
func startFakeCoordinator(t *testing.T, refuse bool) *fakeCoordinator {
	t.Helper()
	f := &fakeCoordinator{ca: newTestCA(t), accepted: make(chan struct{})}
	signer := f.ca
	if refuse {
		signer = newTestCA(t)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: tlsutil.ServerName}, DNSNames: []string{tlsutil.ServerName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, key.Public(), signer.key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	conf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{wire.ALPNMember},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool}
	conf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		f.hellos.Add(1)
		return nil, nil
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var resetKey quic.StatelessResetKey
	rand.Read(resetKey[:])
	tr := &quic.Transport{Conn: udp, StatelessResetKey: &resetKey}
	ln, err := tr.Listen(conf, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: 20 * time.Second, MaxIncomingStreams: 64})
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		f.closeAll(0)
		wg.Wait()
		tr.Close()
		udp.Close()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, conn)
			f.acceptedAt = append(f.acceptedAt, time.Now())
			close(f.accepted)
			f.accepted = make(chan struct{})
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(ctx, conn, &wg)
			}()
		}
	}()
	return f
}

func (f *fakeCoordinator) serve(ctx context.Context, conn *quic.Conn, wg *sync.WaitGroup) {
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer str.Close()
			var req wire.Request
			if err := wire.ReadMsg(str, &req); err != nil {
				return
			}
			resp := &wire.Response{Body: &wire.Response_Ack{Ack: &wire.Ack{}}}
			if f.answer != nil {
				resp = f.answer(conn.Context(), &req)
			}
			_ = wire.WriteMsg(str, resp)
			str.CancelRead(0)
		}()
	}
}

// member is an identity of the fake coordinator's CA.
func (f *fakeCoordinator) member(t *testing.T) *Identity {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := &Identity{ID: "ag-1", Office: "hq", Role: wire.Role_ROLE_AGENT}
	if err := id.SetCAs(f.ca.cert.Raw); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{f.ca.issue(t, "ag-1", key.Public(), time.Now().Add(24*time.Hour))}, PrivateKey: key})
	return id
}

// run runs c until the test ends, and checks it returns then.
func (f *fakeCoordinator) run(t *testing.T, c *Client) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("the client's Run did not return a minute after its context ended")
		}
	})
	return ctx
}

// waitConns waits until n connections were accepted in all.
func (f *fakeCoordinator) waitConns(t *testing.T, n int, within time.Duration) *quic.Conn {
	t.Helper()
	deadline := time.After(within)
	for {
		f.mu.Lock()
		got, accepted := len(f.conns), f.accepted
		var last *quic.Conn
		if got > 0 {
			last = f.conns[got-1]
		}
		f.mu.Unlock()
		if got >= n {
			return last
		}
		select {
		case <-accepted:
		case <-deadline:
			t.Fatalf("%d connections accepted in %v, want %d", got, within, n)
		}
	}
}

// acceptedSince is how many connections were accepted after t.
func (f *fakeCoordinator) acceptedSince(t time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, at := range f.acceptedAt {
		if at.After(t) {
			n++
		}
	}
	return n
}

// closeAll closes every connection, telling the members (as a
// coordinator shutting down does).
func (f *fakeCoordinator) closeAll(code quic.ApplicationErrorCode) {
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(code, "coordinator shutting down")
	}
}

// push opens a stream toward the member on conn and returns its answer.
func push(ctx context.Context, conn *quic.Conn, req *wire.Request) (*wire.Response, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	defer str.CancelRead(0)
	if d, ok := ctx.Deadline(); ok {
		str.SetDeadline(d)
	}
	if err := wire.WriteMsg(str, req); err != nil {
		return nil, err
	}
	str.Close()
	var resp wire.Response
	if err := wire.ReadMsg(str, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
