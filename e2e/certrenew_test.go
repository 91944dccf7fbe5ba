package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// Member certificates last a year. A member asks for a new one for its
// key once 120 days or fewer are left, at a direct check-in, and shows it
// on every connection made after. Here an agent's certificate is replaced
// by one the coordinator's CA signed that ends in 30 days: it is renewed
// for a year at the agent's next check-in, and the agent, restarted,
// still reaches the coordinator with it.
func TestMemberRenewsItsCertificateBeforeItEnds(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("annex", nil)
	a := startAgent(t, c, c.EnrollToken("annex", "agent", 1), "renew-0", "127.0.0.98")
	rev := c.Apply("annex", removeHello)
	tu.Eventually(t, 30*time.Second, func() bool { return a.a.Revision() == rev }, "the agent did not take revision %d", rev)
	a.stop()

	dir := filepath.Join(a.cfg.DataDir, "identity")
	_, caCert, err := tlsutil.ReadCert(filepath.Join(c.DataDir(), "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := tlsutil.ReadKey(filepath.Join(c.DataDir(), "ca", "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlsutil.ReadKey(filepath.Join(dir, "member.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, old, err := tlsutil.ReadCert(filepath.Join(dir, "member.crt"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: old.Subject.CommonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "member.crt"), der); err != nil {
		t.Fatal(err)
	}

	a.start()
	tu.Eventually(t, 60*time.Second, func() bool {
		_, leaf, err := tlsutil.ReadCert(filepath.Join(dir, "member.crt"))
		return err == nil && leaf.NotAfter.After(now.Add(300*24*time.Hour))
	}, "a certificate that ends in 30 days was not renewed")
	a.stop()
	a.start()
	next := c.Apply("annex", "items: []\n")
	tu.Eventually(t, 30*time.Second, func() bool { return a.a.Revision() == next }, "restarted with its renewed certificate, the agent did not take revision %d", next)
}
