package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/relay"
)

// startRelay runs a real relay that enrols with the coordinator and reads
// the file server with the credentials it is issued.
func startRelay(t testing.TB, c *coordinatortest.Harness, token string, opts ...func(*relay.Config)) (*relay.Relay, *prometheus.Registry) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Coordinator = c.QUIC
	cfg.EnrollToken = token
	cfg.CAFingerprint = c.CA
	cfg.GossipBind = "127.0.0.9:0"
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	r, err := relay.New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	tu.Eventually(t, 30*time.Second, func() bool { return r.Addr() != "" }, "relay did not listen")
	return r, reg
}

func TestRelayOfficeOneUpstreamReadAndBadInput(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("berlin", nil)
	r, relayReg := startRelay(t, c, c.EnrollToken("berlin", "relay", 1))
	c.MustDo("PATCH", "/v1/offices/berlin", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(t, c, "berlin", r.Addr())

	// Enrollment refusals say why.
	agentToken := c.EnrollToken("berlin", "agent", 2)
	relayOnly := c.EnrollToken("berlin", "relay", 1)
	for name, tc := range map[string]struct{ token, want string }{
		"unknown token": {"opt_nope", "not known"},
		"wrong role":    {relayOnly, "enrols a relay, not a agent"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tryEnrol(t, c, tc.token)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, tc.want)
			}
		})
	}

	a1 := startAgent(t, c, agentToken, "ber-1", "127.0.0.10")
	a2 := startAgent(t, c, agentToken, "ber-2", "127.0.0.11")
	if err := tryEnrol(t, c, agentToken); err == nil || !strings.Contains(err.Error(), "used 2 of 2") {
		t.Fatalf("exhausted token: got %v", err)
	}

	pkg, err := os.ReadFile(filepath.Join(tu.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sha := c.Upload("hello-1.0.0.tar.gz", pkg)
	rev := c.Apply("berlin", packageYAML(sha, "present"))
	tu.Eventually(t, 60*time.Second, compliantAt(c, "berlin", 2, rev), "agents compliant through the relay: %+v", c.Agents("berlin"))
	// The relay says which revision it holds: the API shows it current.
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, a := range c.Agents("berlin") {
			if a.Role == "relay" {
				return a.Revision == rev && a.Compliant
			}
		}
		return false
	}, "the relay is not shown holding revision %d: %+v", rev, c.Agents("berlin"))
	for _, a := range []*testAgent{a1, a2} {
		if !exists(a.path("opt/hello/bin/hello")) {
			t.Fatalf("%s: package not installed", a.cfg.Hostname)
		}
	}
	if n := metricValue(t, relayReg, "outpost_relay_cache_upstream_fetches_total"); n != 1 {
		t.Fatalf("relay read the file server %v times, want 1", n)
	}
	// The agents got it with their member certificates; someone else on
	// the office's network, trusting the CA but with none, is refused.
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CAPool()}}}
	resp, err := stranger.Get(relayURL(r.Addr()) + "/v1/blobs/sha256/" + sha)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "member certificate") {
		t.Fatalf("content without a member certificate: %d %s", resp.StatusCode, body)
	}
	if resp, err := stranger.Get(relayURL(r.Addr()) + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz without a certificate: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Bytes that do not match the policy are never installed: replace the
	// object on the file server behind everyone's back.
	evil := bytes.Repeat([]byte("x"), len(pkg))
	evilSHA := c.Upload("evil.tar.gz", evil)
	cl := m.Client(t)
	if _, err := cl.PutObject(context.Background(), "outpost-artifacts", "sha256/"+evilSHA, bytes.NewReader(pkg[:len(pkg)-1]), int64(len(pkg)-1), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rev = c.Apply("berlin", fmt.Sprintf("items:\n  - kind: package\n    name: evil\n    version: \"1\"\n    artifact: %s\n", evilSHA))
	tu.Eventually(t, 60*time.Second, func() bool {
		for _, a := range c.Agents("berlin") {
			if a.Role != "agent" {
				continue
			}
			if a.Revision != rev || len(a.Items) != 1 || a.Items[0].Status != "failed" || !strings.Contains(a.Items[0].Message, "nothing installed") {
				return false
			}
		}
		return true
	}, "agents did not report the tampered artifact as failed: %+v", c.Agents("berlin"))
	if exists(a1.path("opt/evil")) || exists(a2.path("opt/evil")) {
		t.Fatal("tampered package was installed")
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// tryEnrol runs an agent with token and returns why it stopped.
func tryEnrol(t *testing.T, c *coordinatortest.Harness, token string) error {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Coordinator, cfg.EnrollToken, cfg.CAFingerprint = c.QUIC, token, c.CA
	cfg.DataDir, cfg.Root, cfg.PluginsDir = t.TempDir(), t.TempDir(), t.TempDir()
	cfg.GossipBind, cfg.Hostname, cfg.Fast = "127.0.0.1:0", "refused", true
	a, err := agent.New(cfg, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Run(ctx)
}
