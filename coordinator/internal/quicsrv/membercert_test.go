package quicsrv

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A member gets a new certificate for its key, from its connection, once
// the one it connects with is within wire.MemberCertRenewBefore of its
// end; not before, not for another key, not once it was deleted.
func TestMemberCertificateRenewal(t *testing.T) {
	s, st, _ := checkinServer(t)
	key, der := memberCert(t, s, "agent-1")
	conn, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tlsutil.NewCSR(key, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	ask := func(c *x509.Certificate, csr []byte) *wire.Response {
		return s.memberCert("agent-1", c, &wire.MemberCertRequest{Csr: csr})
	}
	if err := ask(conn, csr).AsError(); err == nil || !strings.Contains(err.Error(), "good until") {
		t.Fatalf("a certificate of a year renewed: %v", err)
	}
	ending := *conn
	ending.NotAfter = time.Now().Add(30 * 24 * time.Hour)
	resp := ask(&ending, csr)
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetMemberCert().GetCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "agent-1" || leaf.NotAfter.Before(time.Now().Add(360*24*time.Hour)) || string(leaf.RawSubjectPublicKeyInfo) != string(conn.RawSubjectPublicKeyInfo) {
		t.Fatalf("renewed %v until %v", leaf.Subject, leaf.NotAfter)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	// Asked again on the same connection (its old certificate): one an hour.
	if err := ask(&ending, csr).AsError(); err == nil || !strings.Contains(err.Error(), "connect again") {
		t.Fatalf("a second certificate within the hour: %v", err)
	}
	s.certIssued.Delete("agent-1")
	other, _ := tlsutil.NewKey()
	otherCSR, _ := tlsutil.NewCSR(other, "agent-1")
	if err := ask(&ending, otherCSR).AsError(); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("a certificate for another key: %v", err)
	}
	if err := ask(&ending, []byte("junk")).AsError(); err == nil {
		t.Fatal("a malformed request was answered")
	}
	if _, err := st.DeleteMember("agent-1"); err != nil {
		t.Fatal(err)
	}
	if err := ask(&ending, csr).AsError(); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Fatalf("a deleted member: %v", err)
	}
}
