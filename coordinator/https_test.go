package coordinator_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

func httpsGet(t *testing.T, url string, roots *x509.CertPool) error {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get(url + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// The admin API over HTTPS with the coordinator's own certificate, valid
// for loopback and issued by its CA.
func TestAdminHTTPSWithItsOwnCertificate(t *testing.T) {
	c := coordinatortest.New(t)
	if err := httpsGet(t, c.HTTPS, c.CAPool()); err != nil {
		t.Fatalf("trusting the coordinator's CA: %v", err)
	}
	if err := httpsGet(t, c.HTTPS, x509.NewCertPool()); err == nil {
		t.Fatal("trusted without the coordinator's CA")
	}
}

// An admin's own certificate and key, from files, serve the admin API.
func TestAdminHTTPSWithABroughtCertificate(t *testing.T) {
	key, _ := tlsutil.NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "admin.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"admin.example.org"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, keyPath := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(keyPath, key); err != nil {
		t.Fatal(err)
	}
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.TLSCertFile, cfg.TLSKeyFile = crt, keyPath
	}))
	own, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(own)
	if err := httpsGet(t, c.HTTPS, pool); err != nil {
		t.Fatalf("trusting the brought certificate: %v", err)
	}
	if err := httpsGet(t, c.HTTPS, c.CAPool()); err == nil {
		t.Fatal("served the coordinator's own certificate, not the brought one")
	}

	bad := coordinator.DefaultConfig()
	bad.DataDir, bad.TLSCertFile = t.TempDir(), crt
	if err := bad.Validate(); err == nil {
		t.Fatal("a certificate without its key passed validation")
	}
	bad = coordinator.DefaultConfig()
	bad.DataDir, bad.PasswordKDF.Threads = t.TempDir(), 200
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "password_kdf: threads 200") {
		t.Fatalf("200 password hashing threads: %v", err)
	}
}
