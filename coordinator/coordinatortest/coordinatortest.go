// Package coordinatortest starts a real coordinator in-process on loopback
// for tests of other parts, with a small client for its admin API. It is
// imported only from tests.
package coordinatortest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/internal/policy"
	"github.com/outposthq/outpost/pkg/freeport"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// Harness is a running coordinator.
type Harness struct {
	tb      testing.TB
	cfg     coordinator.Config
	C       *coordinator.Coordinator
	URL     string // http://127.0.0.1:port
	HTTPS   string // https://127.0.0.1:port, the same API over HTTPS
	QUIC    string // 127.0.0.1:port
	Token   string
	CA      string // fingerprint
	Reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	stopped bool
	mu      sync.Mutex
}

// Option changes the configuration before start.
type Option func(*coordinator.Config)

// WithMinIO points the coordinator at a test MinIO.
func WithMinIO(m *testutil.MinIO) Option {
	return func(c *coordinator.Config) {
		c.FileServer.Endpoint = m.Endpoint
		c.FileServer.AccessKey = m.AccessKey
		c.FileServer.SecretKey = m.SecretKey
	}
}

// WithConfig changes any setting.
func WithConfig(f func(*coordinator.Config)) Option { return Option(f) }

// Metric returns the value of a counter or gauge without labels, or of the
// sum over its labels.
func (h *Harness) Metric(name string) float64 {
	mfs, err := h.Reg.Gather()
	if err != nil {
		h.tb.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

// New starts a coordinator with its data in a temporary directory, on fixed
// free loopback ports so that Restart keeps its addresses.
func New(tb testing.TB, opts ...Option) *Harness {
	tb.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.HTTPAddr = freeTCP(tb)
	cfg.HTTPSAddr = freeTCP(tb)
	cfg.QUICAddr = freeUDP(tb)
	cfg.LogLevel = "warn"
	for _, o := range opts {
		o(&cfg)
	}
	h := &Harness{tb: tb, cfg: cfg}
	h.start()
	tb.Cleanup(h.Stop)
	return h
}

func freeTCP(tb testing.TB) string { return free(tb, true, false) }
func freeUDP(tb testing.TB) string { return free(tb, false, true) }

// free is a loopback address for the coordinator to listen on, outside
// the ephemeral range (see freeport).
func free(tb testing.TB, tcp, udp bool) string {
	addr, err := freeport.Get("127.0.0.1", tcp, udp)
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

func (h *Harness) start() {
	h.tb.Helper()
	reg := prometheus.NewRegistry()
	c, err := coordinator.New(h.cfg, logging.Discard(), reg)
	if err != nil {
		h.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		cancel()
		h.tb.Fatalf("coordinator did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		h.tb.Fatal("coordinator did not start in 60s")
	}
	h.mu.Lock()
	h.C, h.cancel, h.done, h.stopped, h.Reg = c, cancel, done, false, reg
	h.URL, h.QUIC, h.Token, h.CA = "http://"+c.HTTPAddr(), c.QUICAddr(), c.AdminToken(), c.CAFingerprint()
	if c.HTTPSAddr() != "" {
		h.HTTPS = "https://" + c.HTTPSAddr()
	}
	h.mu.Unlock()
}

// Stop stops the coordinator; it is safe to call twice.
func (h *Harness) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	if err := <-h.done; err != nil {
		h.tb.Errorf("coordinator: %v", err)
	}
}

// Restart stops the coordinator and starts it again on the same data
// directory and addresses.
func (h *Harness) Restart() {
	h.tb.Helper()
	h.Stop()
	h.start()
}

// RestartWith stops the coordinator and starts it again, on the same
// data and addresses, with f applied to its configuration.
func (h *Harness) RestartWith(f func(*coordinator.Config)) {
	h.tb.Helper()
	h.Stop()
	f(&h.cfg)
	h.start()
}

// Do calls the admin API and decodes the JSON answer into out (if not nil).
// It returns the status code and the error message of a failed call.
func (h *Harness) Do(method, path string, body any, out any) (int, string) {
	h.tb.Helper()
	var r io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		r, ctype = strings.NewReader(b), "application/yaml"
	case []byte:
		r, ctype = bytes.NewReader(b), "application/octet-stream"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.tb.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.URL+path, r)
	if err != nil {
		h.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			h.tb.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, ""
}

// MustDo is Do that fails the test on a status of 300 or more.
func (h *Harness) MustDo(method, path string, body any, out any) {
	h.tb.Helper()
	if code, msg := h.Do(method, path, body, out); code >= 300 {
		h.tb.Fatalf("%s %s: %d %s", method, path, code, msg)
	}
}

// CreateOffice creates an office with a short check-in interval.
func (h *Harness) CreateOffice(name string, fields map[string]any) {
	h.tb.Helper()
	body := map[string]any{"name": name, "checkin_interval": "5s"}
	for k, v := range fields {
		body[k] = v
	}
	h.MustDo("POST", "/v1/offices", body, nil)
}

// Token creates an enrollment token.
func (h *Harness) EnrollToken(office, role string, uses int) string {
	h.tb.Helper()
	var out struct{ Token string }
	h.MustDo("POST", "/v1/offices/"+office+"/tokens", map[string]any{"role": role, "uses": uses, "ttl": "1h"}, &out)
	return out.Token
}

// Agent is the API's view of an agent, as tests read it.
type Agent struct {
	ID        string `json:"id"`
	Hostname  string `json:"hostname"`
	Office    string `json:"office"`
	Role      string `json:"role"`
	Revision  uint64 `json:"revision"`
	Compliant bool   `json:"compliant"`
	Connected bool   `json:"connected"`
	Version   string `json:"version"`
	// UpgradeProblem is why the agent refused a new version of itself.
	UpgradeProblem string `json:"upgrade_problem"`
	// LastHang is when the agent last restarted itself after a hang.
	LastHang string `json:"last_hang"`
	Items    []struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"items"`
}

// DataDir is the coordinator's data directory (its CA, its store).
func (h *Harness) DataDir() string { return h.cfg.DataDir }

// Agents lists an office's members.
func (h *Harness) Agents(office string) []Agent {
	h.tb.Helper()
	var out struct{ Agents []Agent }
	h.MustDo("GET", "/v1/agents?office="+office, nil, &out)
	return out.Agents
}

// Upload pushes bytes as an artifact and returns its SHA-256.
func (h *Harness) Upload(name string, b []byte) string {
	h.tb.Helper()
	var out struct{ SHA256 string }
	h.MustDo("POST", "/v1/artifacts?name="+name, b, &out)
	if out.SHA256 == "" {
		h.tb.Fatal("upload returned no sha256")
	}
	return out.SHA256
}

// Apply applies a policy and returns the office's revision: a new one, or
// the current one when that carries the same policy already.
func (h *Harness) Apply(office, yaml string) uint64 {
	h.tb.Helper()
	var out struct{ Revision uint64 }
	h.MustDo("PUT", "/v1/offices/"+office+"/policy", yaml, &out)
	return out.Revision
}

// ApplyNew applies a policy as a new revision even when the current one
// carries the same (force=true): for tests that want a rollout.
func (h *Harness) ApplyNew(office, yaml string) uint64 {
	h.tb.Helper()
	var out struct{ Revision uint64 }
	h.MustDo("PUT", "/v1/offices/"+office+"/policy?force=true", yaml, &out)
	return out.Revision
}

// String names the harness in failures.
func (h *Harness) String() string { return fmt.Sprintf("coordinator %s", h.URL) }

// CAPool holds the coordinator's CA: what agents trust relays' and the
// admin API's certificates by.
func (h *Harness) CAPool() *x509.CertPool {
	h.tb.Helper()
	cert, err := x509.ParseCertificate(h.C.CACertDER())
	if err != nil {
		h.tb.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
}

// RegistryDefaultAllow is the coordinator's copy of the registry plugin's
// default settings-file prefixes (for the test that keeps them equal).
func RegistryDefaultAllow() []string { return slices.Clone(policy.RegistryDefaultAllow) }
