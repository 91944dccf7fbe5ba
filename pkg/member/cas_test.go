package member

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// renewed is a certificate of ca's subject and key ending at end, as the
// coordinator makes when it renews its CA.
func (ca *testCA) renewed(t *testing.T, end time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), RawSubject: ca.cert.RawSubject, SubjectKeyId: ca.cert.SubjectKeyId,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: end}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// A member takes a renewed certificate of the CA it trusts from a
// check-in's answer, keeps it across a restart, tells the coordinator
// its fingerprint, and renews its own certificate, which had to end with
// the old one; a certificate of another key with the same name, or
// garbage, is not taken.
func TestMemberLearnsTheCAsRenewedCertificate(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	old := ca.renewed(t, now.Add(20*24*time.Hour))
	ca.cert = old
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	id := &Identity{ID: "ag-1", Office: "hq", Role: wire.Role_ROLE_AGENT, PolicyKey: pub, GossipKey: make([]byte, 32)}
	if err := id.SetCAs(old.Raw); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{ca.issue(t, "ag-1", key.Public(), old.NotAfter)}, PrivateKey: key})
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	if due, _ := id.CertDue(now); due {
		t.Fatal("a certificate that ends with its CA is due before the CA renews")
	}

	impostor := newTestCA(t)
	impostor.cert.RawSubject = old.RawSubject
	sameName := impostor.renewed(t, now.Add(10*365*24*time.Hour))
	if added, err := id.LearnCAs([][]byte{sameName.Raw, []byte("not a certificate"), old.Raw}, dir); added || err != nil {
		t.Fatalf("took a certificate of another key, or garbage: %v, %v", added, err)
	}

	current := ca.renewed(t, now.Add(10*365*24*time.Hour))
	id.TakeCAs([][]byte{current.Raw, old.Raw}, dir, logging.Discard())
	if id.CAFingerprint() != tlsutil.Fingerprint(current.Raw) || len(id.CAs()) != 2 {
		t.Fatalf("holds %d CA certificates, the newest %s", len(id.CAs()), id.CAFingerprint())
	}
	again, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.CAFingerprint() != tlsutil.Fingerprint(current.Raw) || len(again.CAs()) != 2 {
		t.Fatalf("after a restart: %d CA certificates", len(again.CAs()))
	}
	if due, _ := again.CertDue(now); !due {
		t.Error("a certificate that ends with the old CA certificate is not due once the CA renewed")
	}
	// Its own certificate, sent to peers, carries the CA's.
	c, _ := again.ClientCertificate(nil)
	if len(c.Certificate) != 3 {
		t.Errorf("the member's chain has %d certificates, want its own and the CA's two", len(c.Certificate))
	}
}

// Enrolment trusts the certificates of the pinned CA's key that the
// coordinator sends, whichever of them was pinned, and nothing else.
func TestEnrolmentTakesThePinnedCAsCertificates(t *testing.T) {
	ca := newTestCA(t)
	old := ca.cert
	current := ca.renewed(t, time.Now().Add(10*365*24*time.Hour))
	impostor := newTestCA(t)
	er := &wire.EnrollResponse{CaCertificate: current.Raw, CaCertificates: [][]byte{current.Raw, old.Raw, impostor.cert.Raw}}
	cas, err := enrolledCAs(er, tlsutil.Fingerprint(old.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(cas) != 2 || !cas[0].Equal(current) || !cas[1].Equal(old) {
		t.Fatalf("trusts %d certificates", len(cas))
	}
	if _, err := enrolledCAs(er, tlsutil.Fingerprint(newTestCA(t).cert.Raw)); !errors.Is(err, tlsutil.ErrWrongCA) {
		t.Fatalf("enrolled under a CA that was not pinned: %v", err)
	}
	// An older coordinator sends only its certificate.
	if cas, err := enrolledCAs(&wire.EnrollResponse{CaCertificate: old.Raw}, tlsutil.Fingerprint(old.Raw)); err != nil || len(cas) != 1 {
		t.Fatalf("one certificate: %d, %v", len(cas), err)
	}
}

// What a check-in's answer says of the CA's certificates comes from the
// network: whatever it holds, a member takes only certificates of the CA
// it trusts, and never panics.
func FuzzLearnCAs(f *testing.F) {
	ca := &testCA{}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca.key = key
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	ca.cert, _ = x509.ParseCertificate(der)
	f.Add(der, []byte{})
	f.Add([]byte("garbage"), der[:len(der)/2])
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, a, b []byte) {
		id := &Identity{}
		if err := id.SetCAs(ca.cert.Raw); err != nil {
			t.Fatal(err)
		}
		if _, err := id.LearnCAs([][]byte{a, b}, dir); err != nil {
			t.Fatal(err)
		}
		for _, c := range id.CAs() {
			if !tlsutil.SameCA(ca.cert, c) {
				t.Fatal("took a certificate of another CA")
			}
		}
	})
}
