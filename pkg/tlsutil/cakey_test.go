package tlsutil

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"
)

// renewed is a certificate of ca's key and subject valid from nb to na,
// as the coordinator makes when it renews its CA.
func (ca *testCA) renewed(t *testing.T, nb, na time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), RawSubject: ca.cert.RawSubject,
		SubjectKeyId: ca.cert.SubjectKeyId, NotBefore: nb, NotAfter: na,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.cert.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// A member that holds a CA certificate that has ended goes on trusting
// what the CA's key signs when a renewed certificate of it is sent along;
// a certificate of the same name for another key is no such thing.
func TestVerifyFromCATrustsTheKeyNotOneCertificate(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t)
	ended := ca.renewed(t, now.Add(-48*time.Hour), now.Add(-time.Hour))
	current := ca.renewed(t, now.Add(-time.Hour), now.Add(240*time.Hour))
	leaf := ca.issue(t, now.Add(-time.Hour), now.Add(time.Hour), "relay.example").Leaf

	// An impostor: same name, its own key, signed by itself.
	impostor := newTestCA(t)
	impostor.cert = impostor.renewed(t, now.Add(-time.Hour), now.Add(time.Hour))
	fake := impostor.issue(t, now.Add(-time.Hour), now.Add(time.Hour), "relay.example").Leaf
	sameName := impostor.renewed(t, now.Add(-time.Hour), now.Add(time.Hour))

	opts := x509.VerifyOptions{DNSName: "relay.example"}
	for _, tc := range []struct {
		name           string
		chain, anchors []*x509.Certificate
		ok             bool
	}{
		{"anchor valid", []*x509.Certificate{leaf}, []*x509.Certificate{ca.cert}, true},
		{"anchor ended, nothing sent along", []*x509.Certificate{leaf}, []*x509.Certificate{ended}, false},
		{"anchor ended, the renewed one sent along", []*x509.Certificate{leaf, current}, []*x509.Certificate{ended}, true},
		{"anchors ended and renewed", []*x509.Certificate{leaf}, []*x509.Certificate{current, ended}, true},
		{"another key's leaf", []*x509.Certificate{fake, sameName}, []*x509.Certificate{ended}, false},
		{"another key's CA sent along for our leaf", []*x509.Certificate{leaf, sameName}, []*x509.Certificate{ended}, false},
		{"no anchors", []*x509.Certificate{leaf, current}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyFromCA(tc.chain, tc.anchors, opts)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if SameCA(ended, sameName) || !SameCA(ended, current) || SameCA(ended, leaf) {
		t.Error("SameCA tells the CA's certificates from others wrongly")
	}

	// An installer pins the first certificate's fingerprint: once it has
	// ended, the chain that carries it and the renewed one still verifies.
	chain := []*x509.Certificate{leaf, current, ended}
	if err := VerifyPinned(chain, Fingerprint(ended.Raw), opts); err != nil {
		t.Errorf("pinned an ended certificate of the CA: %v", err)
	}
	if err := VerifyPinned([]*x509.Certificate{leaf, current}, Fingerprint(ended.Raw), opts); !errors.Is(err, ErrWrongCA) {
		t.Errorf("pinned certificate not sent along: %v", err)
	}
	if err := VerifyPinned([]*x509.Certificate{fake, sameName, ended}, Fingerprint(ended.Raw), opts); err == nil {
		t.Error("a leaf of another key verified by the pinned CA")
	}
}

func TestCertsFileKeepsEveryCertificateInOrder(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := WriteCerts(path, [][]byte{ca.cert.Raw, other.cert.Raw}); err != nil {
		t.Fatal(err)
	}
	ders, certs, err := ReadCerts(path)
	if err != nil || len(ders) != 2 || !certs[0].Equal(ca.cert) || !certs[1].Equal(other.cert) {
		t.Fatalf("read back %d certificates, %v", len(ders), err)
	}
	// A file of one certificate, as members kept before, reads as one.
	if err := WriteCert(path, ca.cert.Raw); err != nil {
		t.Fatal(err)
	}
	if ders, _, err := ReadCerts(path); err != nil || len(ders) != 1 {
		t.Fatalf("one certificate: %d, %v", len(ders), err)
	}
}

// A CLI that holds, as a --ca file or a pinned fingerprint, a certificate
// of the coordinator's CA that has ended since reaches the coordinator's
// own HTTPS certificate when the renewed one is sent along.
func TestPinnedHTTPSAfterTheCARenewed(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t)
	ended := ca.renewed(t, now.Add(-48*time.Hour), now.Add(-time.Hour))
	current := ca.renewed(t, now.Add(-time.Hour), now.Add(240*time.Hour))
	cert := ca.issue(t, now.Add(-time.Hour), now.Add(time.Hour), ServerName)
	cert.Certificate = [][]byte{cert.Certificate[0], current.Raw, ended.Raw}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	other := newTestCA(t)
	for _, tc := range []struct {
		name        string
		fingerprint string
		extra       []*x509.Certificate
		ok          bool
	}{
		{"the ended certificate's fingerprint", Fingerprint(ended.Raw), nil, true},
		{"the ended certificate as a --ca file", "", []*x509.Certificate{ended}, true},
		{"another CA's fingerprint", Fingerprint(other.cert.Raw), nil, false},
		{"another CA as a --ca file", "", []*x509.Certificate{other.cert}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := PinnedHTTPS("127.0.0.1", tc.fingerprint, tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: conf}}).Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
