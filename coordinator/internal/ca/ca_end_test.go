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

// The CA is made for ten years at first start, and Outpost cannot roll it
// over yet (the coordinator warns for its last two years). What it issues
// in its last year must not claim to outlive it: a certificate "for a
// year" whose chain ends sooner would not be renewed in time, and members
// and the coordinator would keep asking for renewals that cannot help.
// Here, a coordinator whose CA has 20 days left.
func TestCertificatesEndNoLaterThanTheirCA(t *testing.T) {
	dir := t.TempDir()
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Outpost CA", Organization: []string{"Outpost"}},
		NotBefore: now.Add(-(caLifetime - 20*24*time.Hour)), NotAfter: now.Add(20 * 24 * time.Hour),
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
	c, err := LoadOrCreate(dir, nil)
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
