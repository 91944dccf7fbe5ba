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

// The CA is made for ten years at first start and nothing ever replaces
// it, warns of its end, or keeps what it issues within it: in its last
// year it goes on issuing member and server certificates "for a year"
// whose chain dies with it. Members judge renewal by their own
// certificate's end (CertDue), so none asks in time, and on the CA's last
// day every member, relay, technician CLI and peer connection of the
// fleet fails at once, with no way back but enrolling every computer
// again. Here, a coordinator whose CA has 20 days left.
func TestReviewTimeCertificatesIssuedNearTheCAsEndStayValidForTheirLife(t *testing.T) {
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
	at := now.Add(30 * 24 * time.Hour)
	for name, leaf := range map[string]*x509.Certificate{"member": member, "server": server} {
		usage := x509.ExtKeyUsageClientAuth
		if name == "server" {
			usage = x509.ExtKeyUsageServerAuth
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			t.Errorf("%s certificate issued today \"until %s\" no longer verifies in 30 days (the CA ends in 20, nothing renews it): %v",
				name, leaf.NotAfter.UTC().Format(time.DateOnly), err)
		}
	}
}
