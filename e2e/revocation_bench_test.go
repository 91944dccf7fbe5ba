package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// benchAgent starts a real agent for a benchmark (startAgent takes a *testing.T).
func benchAgent(b *testing.B, c *coordinatortest.Harness, token, hostname string) *agent.Agent {
	b.Helper()
	dir := b.TempDir()
	cfg := agent.DefaultConfig()
	cfg.Coordinator, cfg.EnrollToken, cfg.CAFingerprint = c.QUIC, token, c.CA
	cfg.DataDir, cfg.Root, cfg.PluginsDir = filepath.Join(dir, "data"), filepath.Join(dir, "root"), filepath.Join(dir, "plugins")
	cfg.Hostname, cfg.GossipBind, cfg.Fast = hostname, "127.0.0.71:0", true
	os.MkdirAll(cfg.Root, 0o755)
	os.MkdirAll(cfg.PluginsDir, 0o755)
	a, err := agent.New(cfg, testLogger(b), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		b.Fatalf("agent: %v", err)
	case <-time.After(60 * time.Second):
		b.Fatal("agent did not start")
	}
	return a
}

// BenchmarkRevocationCut measures how long a live session of a user lasts
// after an admin disables that user: from the API call to the session's
// end arriving at the technician, pushed over QUIC to the connected host.
func BenchmarkRevocationCut(b *testing.B) {
	c := coordinatortest.New(b)
	c.CreateOffice("berlin", nil)
	a := benchAgent(b, c, c.EnrollToken("berlin", "agent", 1), "pc-bench")
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs", "members": []string{"tina"}}, nil)
	var perm struct{ Revision uint64 }
	c.MustDo("PUT", "/v1/offices/berlin/permissions", map[string]any{"grants": []map[string]any{{"subject": "group:techs", "rights": []string{"command"}}}}, &perm)
	deadline := time.Now().Add(30 * time.Second)
	for a.Revision() < perm.Revision {
		if time.Now().After(deadline) {
			b.Fatal("agent did not take the permissions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tlsConf, err := tlsutil.PinnedConfig(c.CA, wire.ALPNTechnician)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn, err := quic.DialAddr(ctx, c.QUIC, tlsConf, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")

	var total time.Duration
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": false}, nil)
		var login struct {
			AccessToken string `json:"access_token"`
		}
		// A token issued in the same millisecond as the last revocation
		// would count as revoked.
		for t0 := time.Now().UnixMilli(); time.Now().UnixMilli() <= t0; {
		}
		c.MustDo("POST", "/v1/login", map[string]any{"user": "tina", "password": "tina-password-1"}, &login)
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := wire.WriteMsg(str, &wire.SessionOpen{Token: login.AccessToken, Host: "pc-bench", Kind: wire.SessionOpen_KIND_EXEC,
			Argv: []string{"/bin/sh", "-c", "echo started; sleep 60"}}); err != nil {
			b.Fatal(err)
		}
		wire.WriteMsg(str, &wire.SessionInput{Body: &wire.SessionInput_CloseStdin{CloseStdin: true}})
		started := false
		for !started {
			var m wire.SessionOutput
			if err := wire.ReadMsg(str, &m); err != nil {
				b.Fatal(err)
			}
			if end := m.GetEnd(); end != nil {
				b.Fatalf("iteration %d of %d: session ended before it started: %v", i, b.N, end)
			}
			started = strings.Contains(string(m.GetStdout()), "started")
		}
		b.StartTimer()
		start := time.Now()
		c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
		var end *wire.SessionEnd
		for end == nil {
			var m wire.SessionOutput
			if err := wire.ReadMsg(str, &m); err != nil {
				b.Fatalf("session broke off instead of ending: %v", err)
			}
			end = m.GetEnd()
		}
		cut := time.Since(start)
		b.StopTimer()
		if !end.GetRevoked() {
			b.Fatalf("session ended but not by the revocation: %v", end)
		}
		if cut > time.Second {
			b.Errorf("iteration %d: the session lasted %v after the user was disabled, more than 1 s", i, cut)
		}
		total += cut
		str.CancelRead(0)
		str.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/cut")
}
