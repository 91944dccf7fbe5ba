package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// writeEndingCA writes into dir (a coordinator's <data_dir>/ca) a CA whose
// certificate ends in left, as a coordinator set up years ago has.
func writeEndingCA(t *testing.T, dir string, left time.Duration) *x509.Certificate {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "Outpost CA", Organization: []string{"Outpost"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(left),
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
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// The coordinator's CA certificate ends: the coordinator renews it before
// then, with the same key, and nothing has to enrol again. Here the
// certificate ends a couple of minutes after the fleet is set up: an
// office with a relay process serving HTTPS and an agent. The coordinator
// restarts with the default renewal window and renews it; the agent and
// the relay learn the new certificate at their next check-in and renew
// their own certificates, which had to end with the old one. Once the old
// certificate has ended, the agent still takes policy and fetches a
// package from the relay over HTTPS, and an installer made before the
// renewal, pinning the ended certificate's fingerprint, still enrols a
// new agent, as does the CLI's pin of it reach the admin API.
func TestFleetCarriesOnAcrossACARenewal(t *testing.T) {
	m := tu.StartMinIO(t)
	relayBinary(t) // built before the clock starts
	dataDir := t.TempDir()
	const life = 60 * time.Second
	old := writeEndingCA(t, filepath.Join(dataDir, "ca"), life)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m), coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.DataDir = dataDir
		cfg.CARenewBefore = time.Nanosecond // not yet
	}))
	oldFP := c.CA
	if oldFP != tlsutil.Fingerprint(old.Raw) {
		t.Fatalf("the coordinator made a CA of its own: %s", oldFP)
	}
	c.CreateOffice("rome", map[string]any{"checkin_interval": "5s"})
	addr := freePort(t, "127.0.0.61")
	r := startRelayProc(t, c, c.EnrollToken("rome", "relay", 1), addr, relayURLConfig(addr))
	c.MustDo("PATCH", "/v1/offices/rome", map[string]any{"mode": "relay", "relays": []string{relayURL(addr)}}, nil)
	waitRelaysServing(t, c, "rome", addr)
	a := startAgent(t, c, c.EnrollToken("rome", "agent", 1), "rome-1", "127.0.0.62")
	rev := c.Apply("rome", removeHello)
	tu.Eventually(t, 30*time.Second, compliantAt(c, "rome", 1, rev), "agent not compliant before the renewal: %+v", c.Agents("rome"))

	// The default window: the certificate has far less than three years.
	c.RestartWith(func(cfg *coordinator.Config) { cfg.CARenewBefore = 0 })
	if c.CA == oldFP {
		t.Fatal("the coordinator did not renew its CA certificate")
	}
	renewed, err := x509.ParseCertificate(c.C.CACertDER())
	if err != nil || !tlsutil.SameCA(old, renewed) {
		t.Fatalf("the renewed CA certificate is not the same CA's (%v)", err)
	}
	if end := c.Metric("outpost_coordinator_ca_not_after_timestamp_seconds"); end != float64(renewed.NotAfter.Unix()) {
		t.Errorf("the CA's end by its metric: %v, want %d", end, renewed.NotAfter.Unix())
	}

	agentID := filepath.Join(a.cfg.DataDir, "identity")
	relayID := filepath.Join(filepath.Dir(r.log), "data", "identity")
	learnt := func(dir string) bool {
		_, cas, err := tlsutil.ReadCerts(filepath.Join(dir, "ca.crt"))
		if err != nil || len(cas) != 2 || !cas[0].Equal(renewed) {
			return false
		}
		_, leaf, err := tlsutil.ReadCert(filepath.Join(dir, "member.crt"))
		return err == nil && leaf.NotAfter.After(old.NotAfter)
	}
	tu.Eventually(t, 30*time.Second, func() bool { return learnt(agentID) }, "the agent did not learn the renewed CA certificate and renew its own")
	tu.Eventually(t, 30*time.Second, func() bool { return learnt(relayID) }, "the relay did not learn the renewed CA certificate and renew its own")
	tu.Eventually(t, 30*time.Second, func() bool {
		_, leaf, err := tlsutil.ReadCert(filepath.Join(relayID, "serving.pem"))
		return err == nil && leaf.NotAfter.After(old.NotAfter)
	}, "the relay did not renew its serving certificate")
	if wait := time.Until(old.NotAfter); wait > 0 {
		t.Logf("the fleet took the renewal with %v of the old certificate left; waiting for its end", wait.Round(time.Second))
		time.Sleep(wait + time.Second)
	} else {
		t.Fatalf("the fleet took the renewal %v after the old certificate ended: give the test more time", -wait)
	}

	// After the old certificate's end: policy, a package from the relay
	// over HTTPS.
	pkg := bigPackage(t, 1<<20)
	rev = c.Apply("rome", packageYAML(c.Upload("big-1.0.0.tar.gz", pkg), "present"))
	tu.Eventually(t, 60*time.Second, compliantAt(c, "rome", 1, rev), "agent not compliant after the old CA certificate ended: %+v", c.Agents("rome"))
	if n := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "relay"}); n != float64(len(pkg)) {
		t.Fatalf("fetched %v bytes from the relay, want %d", n, len(pkg))
	}

	// An installer made before the renewal pins the ended certificate.
	startAgentWith(t, c, c.EnrollToken("rome", "agent", 1), "rome-2", "127.0.0.63", t.TempDir(), func(cfg *agent.Config) {
		cfg.CAFingerprint = oldFP
	})
	tu.Eventually(t, 60*time.Second, compliantAt(c, "rome", 2, rev), "an agent enrolled by the old fingerprint is not compliant: %+v", c.Agents("rome"))

	// The API tells the CA's certificates and who holds the current one:
	// the relay and both agents.
	var ca struct {
		Fingerprint string `json:"fingerprint"`
		Earlier     []struct {
			Fingerprint string `json:"fingerprint"`
			Ended       bool   `json:"ended"`
		} `json:"earlier"`
		Members struct{ Current, Earlier, Unknown int } `json:"members"`
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/ca", nil, &ca)
		return ca.Members.Current == 3
	}, "GET /v1/ca: %+v", &ca)
	if ca.Fingerprint != c.CA || len(ca.Earlier) != 1 || ca.Earlier[0].Fingerprint != oldFP || !ca.Earlier[0].Ended || ca.Members.Earlier != 0 {
		t.Errorf("GET /v1/ca: %+v", ca)
	}

	// So does a CLI that signed in before: the coordinator's own HTTPS.
	conf, err := tlsutil.PinnedHTTPS("127.0.0.1", oldFP, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
	resp, err := hc.Get(c.HTTPS + "/healthz")
	if err != nil {
		t.Fatalf("the admin API over HTTPS, pinned to the ended certificate: %v", err)
	}
	resp.Body.Close()
	// A pin of another CA is still refused.
	other := tlsutil.Fingerprint(writeEndingCA(t, t.TempDir(), time.Hour).Raw)
	conf, _ = tlsutil.PinnedHTTPS("127.0.0.1", other, nil)
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
	if resp, err := hc.Get(c.HTTPS + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("the admin API answered a CLI that pins another CA")
	}
}
