package ca

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// A coordinator first started while its clock was far ahead made a
// server certificate that is valid only from then. Once the clock is
// right, the CA's own certificate is renewed (TestCACertificateFromTheFutureIsRenewed),
// and the server certificate must be too: kept because it is signed by
// the same key and ends far off, it made every member's handshake fail
// ("not yet valid") until the day it was made for.
func TestServerCertificateFromTheFutureIsReplaced(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	// The server certificate as a clock 40 days ahead made it.
	caKey, err := tlsutil.ReadKey(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, caCert, err := tlsutil.ReadCert(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tlsutil.NewKey()
	ahead := time.Now().Add(40 * 24 * time.Hour)
	tmpl := &x509.Certificate{SerialNumber: serial(), DNSNames: []string{tlsutil.ServerName},
		NotBefore: ahead.Add(-time.Hour), NotAfter: ahead.Add(serverLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "server.crt"), der); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(filepath.Join(dir, "server.key"), key); err != nil {
		t.Fatal(err)
	}

	c, err := LoadOrCreate(dir, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A member's handshake, over real TLS on loopback.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"outpost-test"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := c.ServerCertificate()
			return &cert, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	cas := func() []*x509.Certificate { return []*x509.Certificate{mustParse(t, c.CertDER())} }
	none := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	conf, err := tlsutil.MemberConfig(none, cas, "outpost-test")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), conf)
	if err != nil {
		t.Fatalf("a member cannot reach the coordinator: %v (server certificate valid from %s)",
			err, c.ServerCertificate().Leaf.NotBefore.UTC().Format(time.DateOnly))
	}
	conn.Close()
}
