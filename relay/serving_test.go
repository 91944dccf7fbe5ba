package relay

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// miniCA stands in for the coordinator's CA.
type miniCA struct {
	cert *x509.Certificate
	key  any
	// life and age shape what issue makes: valid for life, of which age
	// has passed already.
	life, age time.Duration
	issued    int
}

func newMiniCA(t testing.TB) *miniCA {
	t.Helper()
	key, _ := tlsutil.NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mini CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &miniCA{cert: cert, key: key, life: time.Hour}
}

// call answers a ServingCertRequest as the coordinator does, for the hosts
// asked.
func (ca *miniCA) call(_ context.Context, req *wire.Request) (*wire.Response, error) {
	sc := req.GetServingCert()
	csr, err := x509.ParseCertificateRequest(sc.GetCsr())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(ca.issued + 2)), NotBefore: now.Add(-ca.age), NotAfter: now.Add(ca.life - ca.age),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, h := range sc.GetHosts() {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	ca.issued++
	return &wire.Response{Body: &wire.Response_ServingCert{ServingCert: &wire.ServingCertResponse{Certificate: der, Hosts: sc.GetHosts()}}}, nil
}

// The serving certificate names the relay's configured hosts that the
// office's relay URLs name, survives a restart, and is renewed before it
// expires or when the office's URLs change.
func TestServingCertIssuedKeptAndRenewed(t *testing.T) {
	ca := newMiniCA(t)
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdvertiseURL, cfg.TLSHosts = "10.1.0.5:8090", "https://relay.branch.example:8090", "relay-alias.example, 10.9.9.9"
	asked := cfg.ServingHosts()
	if want := []string{"relay-alias.example", "10.9.9.9", "relay.branch.example", "10.1.0.5"}; !reflect.DeepEqual(asked, want) {
		t.Fatalf("ServingHosts = %q, want %q", asked, want)
	}
	office := []string{"https://relay.branch.example:8090", "https://10.1.0.5:8090", "https://10.1.0.6:8090"}
	ctx := context.Background()

	sc := &servingCert{dir: dir}
	if _, err := sc.GetCertificate(nil); err == nil {
		t.Fatal("a certificate before any was issued")
	}
	if _, err := sc.ensure(ctx, ca.call, asked, []string{"https://10.7.7.7:8090"}); err == nil || !strings.Contains(err.Error(), "none of the relay's hosts") {
		t.Fatalf("office naming none of the relay's hosts: %v", err)
	}
	renewed, err := sc.ensure(ctx, ca.call, asked, office)
	if err != nil || !renewed {
		t.Fatalf("first issue: %v %v", renewed, err)
	}
	if got := tlsutil.CertHosts(sc.leaf()); !reflect.DeepEqual(got, []string{"10.1.0.5", "relay.branch.example"}) {
		t.Fatalf("SANs %q: want those the office names", got)
	}
	if renewed, _ := sc.ensure(ctx, ca.call, asked, office); renewed {
		t.Fatal("renewed a fresh certificate")
	}

	// A restart serves the kept certificate before the coordinator answers.
	again := &servingCert{dir: dir}
	again.load()
	if c, err := again.GetCertificate(nil); err != nil || !reflect.DeepEqual(c.Leaf.Raw, sc.leaf().Raw) {
		t.Fatalf("after a restart: %v", err)
	}

	// The office drops a URL: the certificate follows.
	if renewed, err := sc.ensure(ctx, ca.call, asked, office[1:]); err != nil || !renewed {
		t.Fatalf("after the office changed: %v %v", renewed, err)
	}
	if got := tlsutil.CertHosts(sc.leaf()); !reflect.DeepEqual(got, []string{"10.1.0.5"}) {
		t.Fatalf("SANs %q after the office changed", got)
	}

	// Two thirds of its life gone: renewed before it expires.
	ca.age = 45 * time.Minute
	if renewed, err := sc.ensure(ctx, ca.call, asked, office); err != nil || !renewed {
		t.Fatalf("issue an ageing one: %v %v", renewed, err)
	}
	ca.age = 0
	before := sc.leaf().NotAfter
	if renewed, err := sc.ensure(ctx, ca.call, asked, office); err != nil || !renewed || !sc.leaf().NotAfter.After(before) {
		t.Fatalf("renewal before expiry: %v %v, expires %v (was %v)", renewed, err, sc.leaf().NotAfter, before)
	}
}

func writeTestPair(t testing.TB, ca *miniCA, hosts ...string) (string, string) {
	t.Helper()
	key, _ := tlsutil.NewKey()
	csr, _ := tlsutil.NewCSR(key, "x")
	resp, err := ca.call(context.Background(), &wire.Request{Body: &wire.Request_ServingCert{ServingCert: &wire.ServingCertRequest{Csr: csr, Hosts: hosts}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, keyPath := filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.GetServingCert().GetCertificate()}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(keyPath, key); err != nil {
		t.Fatal(err)
	}
	return crt, keyPath
}

// An admin's own certificate, from files, is what the relay serves; a
// client that trusts another CA refuses it; and without any certificate or
// plain_http the relay does not start.
func TestRelayServesHTTPSWithItsOwnCertificate(t *testing.T) {
	ca, other := newMiniCA(t), newMiniCA(t)
	cfg := testConfig(t)
	cfg.PlainHTTP = false
	cfg.LANSendBufferBytes = 256 << 10 // asked for, and still not given over HTTPS
	cfg.TLSCertFile, cfg.TLSKeyFile = writeTestPair(t, ca, "127.0.0.1")
	tr := startRelay(t, cfg, WithUpstream(newFake()))
	url := strings.Replace(tr.url, "http://", "https://", 1) + "/healthz"

	for _, tc := range []struct {
		name string
		ca   *miniCA
		ok   bool
	}{{"trusted CA", ca, true}, {"another CA", other, false}} {
		t.Run(tc.name, func(t *testing.T) {
			conf := tlsutil.RelayClientTLS("127.0.0.1", func() []*x509.Certificate { return []*x509.Certificate{tc.ca.cert} })
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
			resp, err := hc.Get(url)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("refused for another reason: %v", err)
			}
		})
	}
	if resp, err := http.Get(strings.Replace(url, "https://", "http://", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the HTTPS port")
		}
	}
	// Over HTTPS the relay encrypts every byte itself: no client gets the
	// fixed LAN send buffer, which is for sendfile.
	if lan, auto := tr.metric(t, "outpost_relay_connections_total", "send_buffer", "lan"),
		tr.metric(t, "outpost_relay_connections_total", "send_buffer", "autotuned"); lan != 0 || auto < 2 {
		t.Errorf("HTTPS connections: %v lan, %v autotuned; want every one autotuned", lan, auto)
	}

	bare := testConfig(t)
	bare.PlainHTTP = false
	if _, err := New(bare, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake())); err == nil || !strings.Contains(err.Error(), "no HTTPS certificate") {
		t.Fatalf("relay without a certificate: %v", err)
	}
}

// One relay process per cache directory: a second on the same directory
// (two processes on a shared mount) is refused, and a restart after the
// first has stopped is not.
func TestCacheDirectoryHasOneRelay(t *testing.T) {
	cfg := testConfig(t)
	first, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake())); err == nil || !strings.Contains(err.Error(), "in use by another relay process") {
		t.Fatalf("second relay on the directory: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake())); err != nil {
		t.Fatalf("restart after the first stopped: %v", err)
	}
}
