package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// review2Build builds outpost-agent as version with extra -X flags, with
// the crashing bug of buildCrashingAgent when crash is set.
func review2Build(t *testing.T, dir, version string, crash bool, extra ...string) string {
	t.Helper()
	ld := "-X github.com/outposthq/outpost/agent.Version=" + version
	for _, x := range extra {
		ld += " -X " + x
	}
	args := []string{"build"}
	out := filepath.Join(dir, "outpost-agent-"+version)
	if crash {
		bug := filepath.Join(dir, "bug.go")
		if err := os.WriteFile(bug, []byte("package agent\n\nimport \"time\"\n\nfunc init() {\n\tgo func() {\n\t\ttime.Sleep(2 * time.Second)\n\t\tpanic(\"a release with a bug\")\n\t}()\n}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay := filepath.Join(dir, "overlay.json")
		b, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(testutil.RepoRoot(t), "agent", "zz_release_bug.go"): bug}})
		if err := os.WriteFile(overlay, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-overlay", overlay)
		out += "-bug"
	}
	args = append(args, "-o", out, "-ldflags", ld, "./agent/cmd/outpost-agent")
	cmd := exec.Command("go", args...)
	cmd.Dir = testutil.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the agent %s: %v\n%s", version, err, b)
	}
	return out
}

type review2Supervisor struct {
	mu      sync.Mutex
	starts  int
	current *exec.Cmd
	logs    syncBuffer
}

func (s *review2Supervisor) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// review2Supervise installs v1 at <root>/opt/outpost/bin/outpost-agent and
// starts it again whenever it stops, as systemd's Restart=always does.
func review2Supervise(t *testing.T, c *coordinatortest.Harness, v1, host, ip string) (exe, data string, s *review2Supervisor) {
	t.Helper()
	return superviseWith(t, c, v1, host, ip, "plugin_timeout: 1m\n")
}

// superviseWith is review2Supervise with settings of the test's own
// (YAML lines) in the agent's configuration.
func superviseWith(t *testing.T, c *coordinatortest.Harness, v1, host, ip, settings string) (exe, data string, s *review2Supervisor) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	exe = filepath.Join(root, "opt", "outpost", "bin", "outpost-agent")
	data = filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(v1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf("coordinator: %s\nenroll_token: %s\nca_fingerprint: %s\ndata_dir: %s\nroot: %s\nplugins_dir: %s\nhostname: %s\ngossip_bind: %s\nfast: true\n",
		c.QUIC, c.EnrollToken("hq", "agent", 1), c.CA, data, root, plugins(t), host, freePort(t, ip)) + settings
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s = &review2Supervisor{}
	quit := make(chan struct{})
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		for {
			cmd := exec.Command(exe, "--config", config)
			cmd.Stdout, cmd.Stderr = &s.logs, &s.logs
			dieWithParent(cmd)
			if err := cmd.Start(); err != nil {
				t.Errorf("start the agent: %v", err)
				return
			}
			s.mu.Lock()
			s.starts++
			s.current = cmd
			s.mu.Unlock()
			cmd.Wait()
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(quit)
		s.mu.Lock()
		s.current.Process.Signal(syscall.SIGTERM)
		s.mu.Unlock()
		select {
		case <-supervised:
		case <-time.After(30 * time.Second):
			// An agent that does not stop when asked to is a failure of
			// its own, not a test that waits until go test's timeout.
			t.Errorf("the agent did not stop within 30s of SIGTERM; killed")
			s.mu.Lock()
			s.current.Process.Kill()
			s.mu.Unlock()
			<-supervised
		}
		if t.Failed() {
			t.Logf("the agent's log:\n%s", s.logs.String())
		}
	})
	return exe, data, s
}

func review2AgentIs(t *testing.T, c *coordinatortest.Harness, d time.Duration, what string, ok func(coordinatortest.Agent) bool) {
	t.Helper()
	testutil.Eventually(t, d, func() bool {
		as := c.Agents("hq")
		return len(as) == 1 && ok(as[0])
	}, "%s: %+v", what, c.Agents("hq"))
}

// After a rollback, the package item puts the refused file back at the
// agent's path at each run (as README says it may). Any later start of
// the agent — a reboot, systemctl restart, here a stop asked for and the
// service manager's start — runs that refused file: no trial, no copy of
// the old version left, refused.json not consulted at start. It crashes
// and is restarted for good.
func TestARefusedVersionPutBackByItsPackageNeverRunsAfterARestart(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1, bad := buildAgent(t, builds, "1.0.0-e2e"), buildCrashingAgent(t, builds, "2.0.0-e2e")
	exe, _, s := review2Supervise(t, c, v1, "pc-r2a", "127.0.0.3")
	review2AgentIs(t, c, 60*time.Second, "the agent checked in as 1.0.0-e2e", func(a coordinatortest.Agent) bool { return a.Version == "1.0.0-e2e" })
	badImg, _ := os.ReadFile(bad)
	sha := c.Upload("outpost-2.0.0.tar.gz", agentPackage(t, badImg))
	c.Apply("hq", agentPackageYAML("2.0.0", sha))
	review2AgentIs(t, c, 60*time.Second, "rolled back to 1.0.0-e2e", func(a coordinatortest.Agent) bool {
		return a.Version == "1.0.0-e2e" && strings.Contains(a.UpgradeProblem, "rolled back to 1.0.0-e2e")
	})
	// The package puts the refused file back.
	testutil.Eventually(t, 20*time.Second, func() bool {
		b, _ := os.ReadFile(exe)
		return bytes.Equal(b, badImg)
	}, "the package did not put the refused file back")
	// systemctl restart outpost-agent (or a reboot).
	s.mu.Lock()
	s.current.Process.Signal(syscall.SIGTERM)
	s.mu.Unlock()
	before := s.count()
	time.Sleep(9 * time.Second)
	if n := s.count() - before; n > 1 {
		t.Fatalf("after one restart the agent was started %d times in 9 s: the refused 2.0.0-e2e runs and crashes in a loop, nothing left to roll back to", n)
	}
}

// Where /proc/self/exe is not there (macOS, FreeBSD without procfs, a
// chroot: cmd/outpost-agent's runningImagePath falls back to the path the
// agent was started by), PrepareTrial copies the file at that path — the
// NEW version — as "previous". The rollback then puts the bad version back
// "in place" of itself, refuses it and execs it: it crashes for good.
// Simulated on Linux by pointing runningImagePath at a missing file.
func TestRollbackWithoutProcSelfExePutsTheOldVersionBack(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	noProc := "main.runningImagePath=/nonexistent/proc/self/exe"
	v1 := review2Build(t, builds, "1.0.0-e2e", false, noProc)
	bad := review2Build(t, builds, "2.0.0-e2e", true, noProc)
	_, data, s := review2Supervise(t, c, v1, "pc-r2b", "127.0.0.4")
	review2AgentIs(t, c, 60*time.Second, "the agent checked in as 1.0.0-e2e", func(a coordinatortest.Agent) bool { return a.Version == "1.0.0-e2e" })
	badImg, _ := os.ReadFile(bad)
	sha := c.Upload("outpost-2.0.0.tar.gz", agentPackage(t, badImg))
	c.Apply("hq", agentPackageYAML("2.0.0", sha))
	testutil.Eventually(t, 40*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(data, "upgrade", "refused.json"))
		return err == nil
	}, "no rollback happened")
	before := s.count()
	time.Sleep(8 * time.Second)
	if n := s.count() - before; n > 0 {
		t.Fatalf("after the rollback the agent was started %d more times in 8 s: the version put back is the crashing 2.0.0-e2e", n)
	}
}
