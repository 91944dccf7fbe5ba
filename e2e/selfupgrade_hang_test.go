package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// buildHangingAgent builds outpost-agent as version with a bug that makes
// its check-in never return: agent.go, changed only in the build.
func buildHangingAgent(t *testing.T, dir, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "agent", "agent.go"))
	if err != nil {
		t.Fatal(err)
	}
	const at = "\ta.watch.busy(\"checking in\")\n"
	if !strings.Contains(string(b), at) {
		t.Fatalf("agent.go has no %q to put the bug after", at)
	}
	return buildAgentWithBug(t, dir, version, "agent.go", "-hangs",
		strings.Replace(string(b), at, at+"\tselect {} // a release with a bug: a check-in that never returns\n", 1))
}

// A new version that hangs (its check-in never returns) is not stuck for
// good: past its hang limit it keeps every goroutine's stack in
// <data_dir>/hang.txt and stops, the service manager starts it again, and
// after three such starts its trial rolls it back. The version rolled
// back to checks in, saying why and that the new one hung.
func TestAgentRollsBackANewVersionThatHangs(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1, bad := buildAgent(t, builds, "1.0.0-e2e"), buildHangingAgent(t, builds, "2.0.0-e2e")
	_, data, s := superviseWith(t, c, v1, "pc-hang", "127.0.0.3", "plugin_timeout: 5s\nhang_limit: 8s\n")
	review2AgentIs(t, c, 60*time.Second, "the agent checked in as 1.0.0-e2e", func(a coordinatortest.Agent) bool { return a.Version == "1.0.0-e2e" })
	badImg, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	before := s.count()
	sha := c.Upload("outpost-2.0.0.tar.gz", agentPackage(t, badImg))
	c.Apply("hq", agentPackageYAML("2.0.0", sha))
	review2AgentIs(t, c, 120*time.Second, "rolled back to 1.0.0-e2e after 2.0.0-e2e hung", func(a coordinatortest.Agent) bool {
		return a.Version == "1.0.0-e2e" && strings.Contains(a.UpgradeProblem, "rolled back to 1.0.0-e2e") &&
			strings.Contains(a.UpgradeProblem, "the last time it hung: no progress for") &&
			strings.Contains(a.LastHang, "while checking in")
	})
	// The upgrade's exec, then three starts by the service manager after
	// each hang, the last of which rolled back.
	if n := s.count() - before; n != 3 {
		t.Errorf("the service manager started the agent %d times after the upgrade; want 3 (after each of three hangs)", n)
	}
	b, err := os.ReadFile(filepath.Join(data, "hang.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "while checking in") || !strings.Contains(string(b), "agent 2.0.0-e2e, goroutine stacks:") ||
		!strings.Contains(string(b), "outpost/agent.(*Agent).pass") {
		t.Fatalf("hang.txt does not show where 2.0.0-e2e hung:\n%.2000s", b)
	}
	a := c.Agents("hq")[0]
	if !strings.Contains(a.LastHang, "restarted itself at ") || !strings.Contains(a.LastHang, filepath.Join(data, "hang.txt")) {
		t.Errorf("the coordinator's word of the hang: %q", a.LastHang)
	}
}

// buildAgentWithStuckPart builds outpost-agent as version with a bug that
// makes its technician sessions part ignore a stop: access.go, changed
// only in the build.
func buildAgentWithStuckPart(t *testing.T, dir, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "agent", "access.go"))
	if err != nil {
		t.Fatal(err)
	}
	const at = "\t\treturn a.sessions.Run(ctx)\n"
	if !strings.Contains(string(b), at) {
		t.Fatalf("access.go has no %q to put the bug in", at)
	}
	return buildAgentWithBug(t, dir, version, "access.go", "-stuck-part",
		strings.Replace(string(b), at, "\t\ta.sessions.Run(ctx)\n\t\tselect {} // a release with a bug: a part that ignores a stop\n", 1))
}

// An agent asked to stop whose loop does not end its turn, or one of
// whose parts does not return, (it hangs) does not wait for the service
// manager's kill: it keeps the goroutines' stacks, says why, and stops by
// itself. The same wait bounds a restart into an upgrade, which has no
// service manager's kill behind it.
func TestAgentThatHangsStopsWhenAskedTo(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	for _, tc := range []struct {
		name, host, ip string
		build          func(t *testing.T, dir, version string) string
		hung, where    string
	}{
		{"loop", "pc-hang-stop", "127.0.0.4", buildHangingAgent,
			"its loop did not stop within 5s of being asked to", "outpost/agent.(*Agent).pass"},
		{"part", "pc-stuck-part", "127.0.0.5", buildAgentWithStuckPart,
			"technician sessions did not stop within 5s of being asked to", "outpost/agent.(*Agent).runSessions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.build(t, t.TempDir(), "2.0.0-e2e")
			_, data, s := superviseWith(t, c, bad, tc.host, tc.ip, "plugin_timeout: 5s\nhang_limit: 1h\n")
			testutil.Eventually(t, 60*time.Second, func() bool { return strings.Contains(s.logs.String(), `msg="agent running"`) },
				"the agent did not start")
			time.Sleep(time.Second) // in its first check-in, which may never return
			s.mu.Lock()
			asked := time.Now()
			s.current.Process.Signal(syscall.SIGTERM)
			s.mu.Unlock()
			testutil.Eventually(t, 30*time.Second, func() bool { return s.count() == 2 },
				"the hung agent did not stop when asked to (the service manager started it %d times)", s.count())
			if took := time.Since(asked); took > 20*time.Second {
				t.Errorf("the stop took %s", took)
			}
			b, err := os.ReadFile(filepath.Join(data, "hang.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.hung) || !strings.Contains(string(b), tc.where) {
				t.Fatalf("hang.txt:\n%.2000s", b)
			}
			if !strings.Contains(s.logs.String(), "the agent made no progress: it stops") {
				t.Errorf("the agent's log does not say why it stopped so")
			}
		})
	}
}
