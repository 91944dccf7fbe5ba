package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/freeport"
	"github.com/outposthq/outpost/pkg/testutil"
)

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// plugins builds the real plugin binaries once per test run.
func plugins(t testing.TB) string {
	t.Helper()
	pluginsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-plugins-")
		if err != nil {
			pluginsErr = err
			return
		}
		pluginsDir = dir
		cmd := exec.Command("go", "build", "-o", dir, "./plugins/packages/cmd/outpost-plugin-package")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginsErr = fmt.Errorf("build plugins: %v\n%s", err, out)
		}
	})
	if pluginsErr != nil {
		t.Fatal(pluginsErr)
	}
	return pluginsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginsDir != "" {
		os.RemoveAll(pluginsDir)
	}
	os.Exit(code)
}

// testAgent is a real agent running in-process, with its plugins as real
// subprocesses and its root in a temporary directory.
type testAgent struct {
	t      testing.TB
	cfg    agent.Config
	opts   []agent.Option
	a      *agent.Agent
	reg    *prometheus.Registry // the running agent's metrics
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t testing.TB, c *coordinatortest.Harness, token, hostname, gossipIP string, opts ...agent.Option) *testAgent {
	t.Helper()
	return startAgentIn(t, c, token, hostname, gossipIP, t.TempDir(), opts...)
}

// startAgentIn is startAgent with its data and root under dir.
func startAgentIn(t testing.TB, c *coordinatortest.Harness, token, hostname, gossipIP, dir string, opts ...agent.Option) *testAgent {
	t.Helper()
	return startAgentWith(t, c, token, hostname, gossipIP, dir, nil, opts...)
}

// startAgentWith is startAgentIn with tweak applied to the configuration.
func startAgentWith(t testing.TB, c *coordinatortest.Harness, token, hostname, gossipIP, dir string, tweak func(*agent.Config), opts ...agent.Option) *testAgent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Coordinator = c.QUIC
	cfg.EnrollToken = token
	cfg.CAFingerprint = c.CA
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Root = filepath.Join(dir, "root")
	cfg.PluginsDir = plugins(t)
	cfg.Hostname = hostname
	// A fixed port, as on a real host: a restart comes back at the same
	// address, which is what its office peers remember.
	cfg.GossipBind = freePort(t, gossipIP)
	cfg.PluginTimeout = time.Minute
	cfg.Fast = true
	if tweak != nil {
		tweak(&cfg)
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{t: t, cfg: cfg, opts: opts}
	ta.start()
	t.Cleanup(ta.stop)
	return ta
}

func (ta *testAgent) start() {
	ta.t.Helper()
	reg := prometheus.NewRegistry()
	a, err := agent.New(ta.cfg, testLogger(ta.t).With("host", ta.cfg.Hostname), reg, ta.opts...)
	if err != nil {
		ta.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		ta.t.Fatalf("agent %s did not start: %v", ta.cfg.Hostname, err)
	case <-time.After(60 * time.Second):
		cancel()
		ta.t.Fatalf("agent %s did not start in 60s", ta.cfg.Hostname)
	}
	ta.a, ta.reg, ta.cancel, ta.done = a, reg, cancel, done
}

func (ta *testAgent) stop() {
	if ta.cancel == nil {
		return
	}
	ta.cancel()
	if err := <-ta.done; err != nil {
		ta.t.Errorf("agent %s: %v", ta.cfg.Hostname, err)
	}
	ta.cancel = nil
}

func (ta *testAgent) path(rel string) string { return filepath.Join(ta.cfg.Root, rel) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// freePort finds a port free for both TCP and UDP (memberlist needs both),
// outside the ephemeral range (see freeport).
func freePort(t testing.TB, ip string) string {
	t.Helper()
	addr, err := freeport.Get(ip, true, true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
