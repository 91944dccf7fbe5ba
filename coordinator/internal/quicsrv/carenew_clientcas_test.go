package quicsrv

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// memberHandshake runs a TLS handshake of a member presenting chain
// against the server side conf, and returns the server's error.
func memberHandshake(t *testing.T, conf *tls.Config, chain tls.Certificate) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cl := tls.Client(a, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{wire.ALPNMember},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &chain, nil }})
	go func() {
		if cl.Handshake() == nil {
			io.Copy(io.Discard, cl) // reads the server's alert, if any
		}
	}()
	srv := tls.Server(b, conf)
	b.SetDeadline(time.Now().Add(10 * time.Second))
	err := srv.Handshake()
	if err == nil && len(srv.ConnectionState().VerifiedChains) == 0 {
		t.Fatal("handshake without a verified member certificate")
	}
	return err
}

// The coordinator renews its CA's certificate while it runs (at a
// handshake, when less than ca_renew_before is left). Once the old
// certificate has ended, members must still be let in: the QUIC server's
// ClientCAs is made for each connection, not once with the server, which
// would hold only the old certificate until a restart.
func TestMembersAcceptedAfterTheOldCACertificateEndsWithoutRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.LoadOrCreate(dir, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	// The CA's certificate ends in 6 s (same key), renewed 3 s before.
	key, err := tlsutil.ReadKey(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Outpost CA", Organization: []string{"Outpost"}},
		NotBefore: start.Add(-time.Hour), NotAfter: start.Add(6 * time.Second), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "ca.crt"), der); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.LoadOrCreate(dir, nil, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(authority.Chain()) != 1 {
		t.Fatal("renewed at start")
	}
	s := &Server{ca: authority}
	conf := s.tlsConfig() // what Run listens with, for the server's life

	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	authority.ServerCertificate() // a handshake: the CA renews its certificate
	if len(authority.Chain()) != 2 {
		t.Fatal("the CA's certificate was not renewed while running")
	}
	mkey, _ := tlsutil.NewKey()
	csr, _ := tlsutil.NewCSR(mkey, "ag-1")
	mder, err := authority.IssueMember(csr, "ag-1")
	if err != nil {
		t.Fatal(err)
	}
	// As member.Identity.ClientCertificate shows it: leaf, then the CA's chain.
	chain := tls.Certificate{Certificate: append([][]byte{mder}, authority.Chain()...), PrivateKey: mkey}

	time.Sleep(time.Until(start.Add(7 * time.Second))) // the old certificate has ended
	if err := memberHandshake(t, s.tlsConfig(), chain); err != nil {
		t.Fatalf("control: a freshly built config (a restarted coordinator) refuses the member: %v", err)
	}
	if err := memberHandshake(t, conf, chain); err != nil {
		t.Fatalf("the running coordinator refuses a member once the CA's old certificate ended: %v", err)
	}
}
