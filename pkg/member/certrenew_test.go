package member

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, cn string, pub crypto.PublicKey, end time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: end, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// A member renews its certificate when fewer than MemberCertRenewBefore
// days are left, keeps it across a restart, and shows it on connections
// made after; an answer that is not a later certificate for its id and
// key from its CA is refused, and the old one kept.
func TestMemberRenewsItsCertificate(t *testing.T) {
	ca, stranger := newTestCA(t), newTestCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ending := now.Add(30 * 24 * time.Hour)
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	id := &Identity{ID: "ag-1", Office: "hq", Role: wire.Role_ROLE_AGENT, PolicyKey: pub, GossipKey: make([]byte, 32)}
	if err := id.SetCAs(ca.cert.Raw); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{ca.issue(t, "ag-1", key.Public(), ending)}, PrivateKey: key})
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	if due, end := id.CertDue(now); !due || !end.Equal(ending.Truncate(time.Second)) {
		t.Fatalf("due %v, ends %v", due, end)
	}
	answer := func(der []byte) func(context.Context, *wire.Request) (*wire.Response, error) {
		return func(_ context.Context, req *wire.Request) (*wire.Response, error) {
			if _, err := x509.ParseCertificateRequest(req.GetMemberCert().GetCsr()); err != nil {
				t.Fatalf("request: %v", err)
			}
			return &wire.Response{Body: &wire.Response_MemberCert{MemberCert: &wire.MemberCertResponse{Certificate: der}}}, nil
		}
	}
	year := now.Add(365 * 24 * time.Hour)
	for name, tc := range map[string]struct {
		der  []byte
		want string
	}{
		"another member's":  {ca.issue(t, "ag-2", key.Public(), year), "for \"ag-2\""},
		"another key's":     {ca.issue(t, "ag-1", otherKey.Public(), year), "another key"},
		"ending sooner":     {ca.issue(t, "ag-1", key.Public(), now.Add(24*time.Hour)), "no later"},
		"from another CA":   {stranger.issue(t, "ag-1", key.Public(), year), "unknown authority"},
		"not a certificate": {[]byte("junk"), "answer"},
	} {
		if err := id.RenewCert(context.Background(), answer(tc.der), dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if _, end := id.CertDue(now); !end.Equal(ending.Truncate(time.Second)) {
		t.Fatal("a refused certificate replaced the old one")
	}

	renewed := ca.issue(t, "ag-1", key.Public(), year)
	id.RenewIfDue(context.Background(), answer(renewed), dir, logging.Discard())
	if due, _ := id.CertDue(now); due {
		t.Fatal("not renewed")
	}
	c, _ := id.ClientCertificate(nil)
	if string(c.Certificate[0]) != string(renewed) {
		t.Fatal("connections show the old certificate")
	}
	again, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Certificate().Certificate[0]) != string(renewed) {
		t.Fatal("the renewed certificate is not kept across a restart")
	}
	// Not due: nothing asked.
	id.RenewIfDue(context.Background(), func(context.Context, *wire.Request) (*wire.Response, error) {
		t.Fatal("asked for a certificate that is not due")
		return nil, nil
	}, dir, logging.Discard())
}
