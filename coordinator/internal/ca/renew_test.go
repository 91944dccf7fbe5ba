package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// A CA certificate with less than renewBefore left is renewed at start,
// with the same subject and key: what was issued under the old one
// verifies under the new, the old one is kept and sent along, and the
// next start finds both.
func TestCARenewsItsCertificateWithTheSameKey(t *testing.T) {
	dir := t.TempDir()
	old := caEnding(t, dir, 20*24*time.Hour)

	// Issued while the old certificate was the CA's.
	before, err := LoadOrCreate(dir, nil, time.Nanosecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	mkey, _ := tlsutil.NewKey()
	csr, _ := tlsutil.NewCSR(mkey, "ag-1")
	mder, err := before.IssueMember(csr, "ag-1")
	if err != nil {
		t.Fatal(err)
	}
	member, _ := x509.ParseCertificate(mder)

	c, err := LoadOrCreate(dir, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := x509.ParseCertificate(c.CertDER())
	if cur.Equal(old) || time.Until(cur.NotAfter) < caLifetime-24*time.Hour {
		t.Fatalf("not renewed: ends %s", cur.NotAfter)
	}
	if !tlsutil.SameCA(old, cur) {
		t.Fatal("the renewed certificate is not one of the same CA")
	}
	if chain := c.Chain(); len(chain) != 2 || !cur.Equal(mustParse(t, chain[0])) || !old.Equal(mustParse(t, chain[1])) {
		t.Fatalf("chain: %d certificates", len(chain))
	}
	if sc := c.ServerCertificate(); len(sc.Certificate) != 3 {
		t.Errorf("the server certificate's chain has %d certificates, want leaf, renewed, old", len(sc.Certificate))
	}
	// Only the renewed certificate: the old member certificate verifies.
	roots := x509.NewCertPool()
	roots.AddCert(cur)
	if _, err := member.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a member certificate issued under the old CA certificate: %v", err)
	}
	// What it issues now may last a year again.
	mder, _ = c.IssueMember(csr, "ag-1")
	if renewed, _ := x509.ParseCertificate(mder); !renewed.NotAfter.After(old.NotAfter) {
		t.Errorf("a member certificate issued now ends %s, with the old CA certificate", renewed.NotAfter)
	}

	// The next start renews nothing and keeps both.
	again, err := LoadOrCreate(dir, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chain := again.Chain(); len(chain) != 2 || !cur.Equal(mustParse(t, chain[0])) {
		t.Errorf("after a restart: %d certificates", len(chain))
	}
	if again.Fingerprint() != tlsutil.Fingerprint(cur.Raw) {
		t.Error("the fingerprint is not the current certificate's")
	}
}

// A renewal cut short after the old certificate was kept but before the
// new one replaced it leaves the old one in both files: the next start
// renews again and keeps it once.
func TestCARenewalCutShortIsDoneAgain(t *testing.T) {
	dir := t.TempDir()
	old := caEnding(t, dir, 20*24*time.Hour)
	if err := tlsutil.WriteCerts(filepath.Join(dir, earlierFile), [][]byte{old.Raw}); err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreate(dir, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chain := c.Chain(); len(chain) != 2 || mustParse(t, chain[0]).Equal(old) || !mustParse(t, chain[1]).Equal(old) {
		t.Fatalf("chain of %d certificates", len(chain))
	}
}

// A coordinator that runs on renews the CA's certificate when it comes
// due, at a handshake, and its server certificate's chain carries it.
func TestCARenewsWhileRunning(t *testing.T) {
	dir := t.TempDir()
	old := caEnding(t, dir, 20*24*time.Hour)
	c, err := LoadOrCreate(dir, nil, 19*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Chain()) != 1 {
		t.Fatal("renewed at start with 20 days left of 19")
	}
	c.mu.Lock()
	c.renewBefore = 21 * 24 * time.Hour
	c.mu.Unlock()
	sc := c.ServerCertificate()
	if len(sc.Certificate) != 3 || mustParse(t, sc.Certificate[1]).Equal(old) || !mustParse(t, sc.Certificate[2]).Equal(old) {
		t.Fatalf("server chain of %d certificates after the renewal", len(sc.Certificate))
	}
	if _, err := os.Stat(filepath.Join(dir, earlierFile)); err != nil {
		t.Errorf("the old certificate was not kept: %v", err)
	}
}

// A CA certificate that is not the key's is refused at start, not
// trusted by every member after a renewal.
func TestCAWhoseCertificateIsNotItsKeysIsRefused(t *testing.T) {
	dir := t.TempDir()
	caEnding(t, dir, 20*24*time.Hour)
	other := t.TempDir()
	caEnding(t, other, 20*24*time.Hour)
	b, _ := os.ReadFile(filepath.Join(other, "ca.crt"))
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir, nil, 0, nil); err == nil {
		t.Fatal("loaded a CA whose certificate is another key's")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A CA certificate made while the clock was far ahead is not valid yet
// once the clock is right: it is renewed, not kept until it comes due.
func TestCACertificateFromTheFutureIsRenewed(t *testing.T) {
	dir := t.TempDir()
	future := caEnding(t, dir, caLifetime+5*365*24*time.Hour) // made five years ahead
	if time.Now().After(future.NotBefore) {
		t.Fatal("the test's certificate is valid already")
	}
	c, err := LoadOrCreate(dir, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur := mustParse(t, c.CertDER())
	if cur.Equal(future) || time.Now().Before(cur.NotBefore) {
		t.Fatalf("the CA's certificate is still valid only from %s", cur.NotBefore)
	}
	if !tlsutil.SameCA(future, cur) {
		t.Fatal("renewed as another CA")
	}
}
