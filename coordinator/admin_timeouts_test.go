package coordinator

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// certFiles writes a self-signed certificate for 127.0.0.1 and its key.
func certFiles(t *testing.T) (crt, key string) {
	t.Helper()
	k, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "admin.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(key, k); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// closedWithin says whether the server ends c within wait (reading and
// dropping whatever it sends first).
func closedWithin(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// Every admin server, HTTP and HTTPS, bounds what comes before a handler
// runs, as the handlers bound bodies: a request head sent a byte at a
// time or never finished, a TLS handshake never made, and a kept-alive
// connection that sends no further request are each closed, not held
// with their goroutine for ever (the servers have no read timeout, for
// uploads).
func TestAdminServersBoundHeadsHandshakesAndIdleConnections(t *testing.T) {
	defer func(h, i time.Duration) { readHeaderTimeout, idleTimeout = h, i }(readHeaderTimeout, idleTimeout)
	readHeaderTimeout, idleTimeout = 300*time.Millisecond, 300*time.Millisecond
	crt, key := certFiles(t)
	c := &Coordinator{cfg: Config{HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", TLSCertFile: crt, TLSKeyFile: key}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	servers, err := c.listenAdmin(ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 {
		t.Fatalf("%d admin servers, want HTTP and HTTPS", len(servers))
	}
	for _, s := range servers {
		go s.serve()
		t.Cleanup(func() { s.srv.Close() })
	}
	const wait = 10 * time.Second // far beyond the timeouts set above
	dial := func(t *testing.T, https bool) net.Conn {
		t.Helper()
		addr := c.HTTPAddr()
		if https {
			addr = c.HTTPSAddr()
		}
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		if !https {
			return raw
		}
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc
	}
	for _, https := range []bool{false, true} {
		name := map[bool]string{false: "HTTP", true: "HTTPS"}[https]
		t.Run(name+" head never finished", func(t *testing.T) {
			conn := dial(t, https)
			io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
			if !closedWithin(conn, wait) {
				t.Fatalf("a request head never finished holds its connection after %v", wait)
			}
		})
		t.Run(name+" idle after a request", func(t *testing.T) {
			conn := dial(t, https)
			io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			if !closedWithin(conn, wait) {
				t.Fatalf("an idle kept-alive connection is held after %v", wait)
			}
		})
	}
	t.Run("HTTPS HTTP/2 connection idle", func(t *testing.T) {
		raw, err := net.Dial("tcp", c.HTTPSAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("HTTP/2 handshake: %v, protocol %q", err, tc.ConnectionState().NegotiatedProtocol)
		}
		// The client preface and an empty SETTINGS frame; then no stream.
		io.WriteString(tc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
		if !closedWithin(tc, wait) {
			t.Fatalf("an idle HTTP/2 connection is held after %v", wait)
		}
	})
	t.Run("HTTPS handshake never made", func(t *testing.T) {
		raw, err := net.Dial("tcp", c.HTTPSAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if !closedWithin(raw, wait) {
			t.Fatalf("a connection that never starts its TLS handshake is held after %v", wait)
		}
	})
}
