package ca

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

func TestIssueServingNamesTheHostsAndServesOnly(t *testing.T) {
	authority, err := LoadOrCreate(t.TempDir(), []string{"coord.example.org", "127.0.0.1"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tlsutil.NewCSR(key, "relay")
	if err != nil {
		t.Fatal(err)
	}
	der, err := authority.IssueServing(csr, "rl-1", []string{"relay.branch.example", "10.1.0.5"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"relay.branch.example", "10.1.0.5"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err != nil {
			t.Errorf("not valid for %s: %v", host, err)
		}
	}
	for _, host := range []string{tlsutil.ServerName, "10.1.0.6", "coord.example.org"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err == nil {
			t.Errorf("valid for %s, which the relay did not ask for", host)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a serving certificate authenticates a client")
	}
	if d := time.Until(leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires in %v, want 30 days", d)
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("10.1.0.5")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}

	// The coordinator's own name is never issued to a relay: members and
	// the CLI trust it from this CA alone.
	for _, bad := range [][]string{{tlsutil.ServerName}, {"x", strings.ToUpper(tlsutil.ServerName)}, nil} {
		if _, err := authority.IssueServing(csr, "rl-1", bad, 0); err == nil {
			t.Errorf("issued for %q", bad)
		}
	}
	if _, err := authority.IssueServing([]byte("junk"), "rl-1", []string{"x"}, 0); err == nil {
		t.Error("issued for a malformed request")
	}

	// The coordinator's own certificate carries its admin hosts and the
	// name members verify.
	own := authority.ServerCertificate().Leaf
	for _, host := range []string{tlsutil.ServerName, "coord.example.org", "127.0.0.1"} {
		if _, err := own.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err != nil {
			t.Errorf("coordinator certificate not valid for %s: %v", host, err)
		}
	}
}

// The server certificate lasts a year. A coordinator that runs past 30
// days before its end, without a restart, replaces it: the chain it shows
// and the files on disk; the hosts stay.
func TestServerCertificateRenewedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadOrCreate(dir, []string{"coord.example.org"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ten days left, as a year of running would leave it.
	key, _ := tlsutil.NewKey()
	tmpl := &x509.Certificate{SerialNumber: serial(), DNSNames: []string{tlsutil.ServerName, "coord.example.org"},
		NotBefore: time.Now().Add(-355 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "server.crt"), der); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(filepath.Join(dir, "server.key"), key); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	c.server = tls.Certificate{Certificate: [][]byte{der, c.CertDER()}, PrivateKey: key, Leaf: leaf}

	got := c.ServerCertificate()
	if time.Until(got.Leaf.NotAfter) < 300*24*time.Hour {
		t.Fatalf("the coordinator still shows a certificate that ends %v", got.Leaf.NotAfter)
	}
	if err := got.Leaf.VerifyHostname("coord.example.org"); err != nil {
		t.Fatal(err)
	}
	_, onDisk, err := tlsutil.ReadCert(filepath.Join(dir, "server.crt"))
	if err != nil || !onDisk.NotAfter.Equal(got.Leaf.NotAfter) {
		t.Fatalf("on disk: %v, %v", onDisk.NotAfter, err)
	}
	if again := c.ServerCertificate(); !again.Leaf.Equal(got.Leaf) {
		t.Fatal("renewed again")
	}
}
