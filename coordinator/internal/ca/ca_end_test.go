package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// caEnding writes into dir a CA whose certificate ends in left.
func caEnding(t *testing.T, dir string, left time.Duration) *x509.Certificate {
	t.Helper()
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Outpost CA", Organization: []string{"Outpost"}},
		NotBefore: now.Add(-(caLifetime - left)), NotAfter: now.Add(left),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "ca.crt"), der); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(filepath.Join(dir, "ca.key"), key); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// What the CA issues must not claim to outlive the CA's certificate: a
// certificate "for a year" whose chain ends sooner would not be renewed
// in time, and members and the coordinator would keep asking for
// renewals that cannot help. Here, a coordinator whose CA certificate has
// 20 days left and is not renewed (renewal is tested below).
func TestCertificatesEndNoLaterThanTheirCA(t *testing.T) {
	dir := t.TempDir()
	caEnding(t, dir, 20*24*time.Hour)
	c, err := LoadOrCreate(dir, nil, time.Nanosecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	mkey, _ := tlsutil.NewKey()
	csr, _ := tlsutil.NewCSR(mkey, "ag-1")
	mder, err := c.IssueMember(csr, "ag-1")
	if err != nil {
		t.Fatal(err)
	}
	member, _ := x509.ParseCertificate(mder)
	server := c.ServerCertificate().Leaf
	for name, leaf := range map[string]*x509.Certificate{"member": member, "server": server} {
		if leaf.NotAfter.After(c.NotAfter()) {
			t.Errorf("%s certificate issued today ends %s, after its CA (%s)", name,
				leaf.NotAfter.UTC().Format(time.DateOnly), c.NotAfter().UTC().Format(time.DateOnly))
		}
	}
	// Within 30 days of its end, but ending with the CA: not renewed at
	// every handshake.
	if again := c.ServerCertificate().Leaf; !again.Equal(server) {
		t.Error("the server certificate was issued again, no longer than before")
	}
}
