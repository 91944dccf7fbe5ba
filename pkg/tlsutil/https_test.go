package tlsutil

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway CA for these tests.
type testCA struct {
	cert *x509.Certificate
	key  any
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t testing.TB, notBefore, notAfter time.Time, hosts ...string) tls.Certificate {
	t.Helper()
	key, _ := NewKey()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

func TestServingHostsAreThoseTheOfficeNames(t *testing.T) {
	office := []string{"https://10.1.0.5:8090", "https://Relay.Branch.example:8090", "http://[::1]:8090"}
	for _, tc := range []struct {
		asked, want []string
	}{
		{[]string{"10.1.0.5"}, []string{"10.1.0.5"}},
		{[]string{"relay.branch.EXAMPLE", "10.1.0.5", "10.1.0.5", "evil.example"}, []string{"10.1.0.5", "relay.branch.example"}},
		{[]string{"::1", "0:0:0:0:0:0:0:1"}, []string{"::1"}},
		{[]string{"10.1.0.6", "outpost-coordinator"}, nil},
		{nil, nil},
	} {
		if got := ServingHosts(tc.asked, office); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ServingHosts(%q) = %q, want %q", tc.asked, got, tc.want)
		}
	}
}

func TestNeedsRenewal(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	fresh := ca.issue(t, now.Add(-time.Hour), now.Add(89*24*time.Hour), "10.1.0.5", "relay.example").Leaf
	old := ca.issue(t, now.Add(-70*24*time.Hour), now.Add(20*24*time.Hour), "10.1.0.5").Leaf
	for _, tc := range []struct {
		name  string
		leaf  *x509.Certificate
		hosts []string
		want  bool
	}{
		{"none yet", nil, []string{"10.1.0.5"}, true},
		{"fresh, same hosts", fresh, []string{"relay.example", "10.1.0.5"}, false},
		{"fresh, a host more", fresh, []string{"relay.example", "10.1.0.5", "10.1.0.6"}, true},
		{"fresh, a host fewer", fresh, []string{"10.1.0.5"}, true},
		{"a third of its life left: renewed before it expires", old, []string{"10.1.0.5"}, true},
	} {
		if got := NeedsRenewal(tc.leaf, tc.hosts, now); got != tc.want {
			t.Errorf("%s: NeedsRenewal = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func writePair(t testing.TB, dir string, c tls.Certificate) (string, string) {
	t.Helper()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	var pemCerts []byte
	for _, der := range c.Certificate {
		pemCerts = append(pemCerts, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(crt, pemCerts, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteKey(key, c.PrivateKey); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// An admin's own certificate is served from files, and a renewed pair is
// picked up without a restart.
func TestCertFileLoadsAndReloads(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	first := ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "first.example")
	crt, key := writePair(t, dir, first)
	cf, err := LoadCertFile(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Leaf().DNSNames; len(got) != 1 || got[0] != "first.example" {
		t.Fatalf("serving %v", got)
	}
	second := ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(2*time.Hour), "second.example")
	writePair(t, dir, second)
	later := time.Now().Add(time.Minute)
	os.Chtimes(crt, later, later)
	cf.checked = time.Time{} // as if ten seconds had passed
	c, _ := cf.GetCertificate(nil)
	if c.Leaf.DNSNames[0] != "second.example" {
		t.Fatalf("after renewal serving %v", c.Leaf.DNSNames)
	}

	for name, paths := range map[string][2]string{"missing": {filepath.Join(dir, "nope.crt"), key}, "no key": {crt, ""}} {
		if _, err := LoadCertFile(paths[0], paths[1]); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	other := ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "x")
	_, otherKey := writePair(t, t.TempDir(), other)
	if _, err := LoadCertFile(crt, otherKey); err == nil || !strings.Contains(err.Error(), "load certificate") {
		t.Errorf("a key of another certificate: %v", err)
	}
}

// Members trust relays whose certificates come from the coordinator's CA,
// and no others.
func TestRelayClientTLSRefusesAnotherCA(t *testing.T) {
	ours, theirs := newTestCA(t), newTestCA(t)
	for _, tc := range []struct {
		name string
		ca   *testCA
		host string
		ok   bool
	}{
		{"issued by the pinned CA", ours, "127.0.0.1", true},
		{"another CA", theirs, "127.0.0.1", false},
		{"the pinned CA, another host", ours, "10.9.9.9", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc.ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), tc.host)}}
			srv.StartTLS()
			defer srv.Close()
			conf := RelayClientTLS("127.0.0.1", func() []*x509.Certificate { return []*x509.Certificate{ours.cert} })
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
			resp, err := hc.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// The CLI reaches the coordinator's own certificate (named ServerName, at
// any address) by the CA's fingerprint, and nothing else by it.
func TestPinnedHTTPS(t *testing.T) {
	ours, theirs := newTestCA(t), newTestCA(t)
	for _, tc := range []struct {
		name        string
		cert        tls.Certificate
		fingerprint string
		extra       []*x509.Certificate
		ok          bool
	}{
		{"own certificate by fingerprint", ours.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), ServerName), Fingerprint(ours.cert.Raw), nil, true},
		{"own certificate, no trust", ours.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), ServerName), "", nil, false},
		{"another CA's by our fingerprint", theirs.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), ServerName, "127.0.0.1"), Fingerprint(ours.cert.Raw), nil, false},
		{"a CA file for the host", theirs.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "127.0.0.1"), "", poolOf(theirs.cert), true},
		{"a relay's certificate from our CA", ours.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "10.1.0.5"), Fingerprint(ours.cert.Raw), nil, false},
		{"a relay's certificate for the host, our CA as a file", relayCert(t, ours, "127.0.0.1"), "", poolOf(ours.cert), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc.cert}}
			srv.StartTLS()
			defer srv.Close()
			conf, err := PinnedHTTPS("127.0.0.1", tc.fingerprint, tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
			resp, err := hc.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func poolOf(c *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{c} }

func relayCert(t testing.TB, ca *testCA, host string) tls.Certificate {
	c := ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), host)
	key, _ := NewKey()
	tmpl := *c.Leaf
	tmpl.Subject, tmpl.RawSubject = pkix.Name{OrganizationalUnit: []string{RelayOU + "rl-1"}}, nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
