package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
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

// buildAgent builds outpost-agent as version into dir.
func buildAgent(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "outpost-agent-"+version)
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X github.com/outposthq/outpost/agent.Version="+version, "./agent/cmd/outpost-agent")
	cmd.Dir = testutil.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the agent %s: %v\n%s", version, err, b)
	}
	return out
}

// agentPackage is a package .tar.gz holding bin/outpost-agent.
func agentPackage(t *testing.T, exe []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "bin/outpost-agent", Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg, ModTime: time.Unix(1704067200, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(exe)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func agentPackageYAML(version, sha string) string {
	return fmt.Sprintf("items:\n  - kind: package\n    name: outpost\n    version: %q\n    artifact: %s\n", version, sha)
}

// The agent upgrades itself through its own policy: a package item puts a
// new outpost-agent in place of the running one, and the agent, between
// two runs, checks it and restarts into it in the same process. A file
// that is not an agent taking its settings is refused, the coordinator is
// told why, and the version that runs goes on running.
func TestAgentUpgradesItselfThroughItsPolicy(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1, v2 := buildAgent(t, builds, "1.0.0-e2e"), buildAgent(t, builds, "2.0.0-e2e")

	// Installed by hand, as install.sh would, under /opt/outpost in the
	// agent's root: the package item of the upgrade has that prefix.
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	exe := filepath.Join(root, "opt", "outpost", "bin", "outpost-agent")
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
	yaml := fmt.Sprintf("coordinator: %s\nenroll_token: %s\nca_fingerprint: %s\ndata_dir: %s\nroot: %s\nplugins_dir: %s\nhostname: pc-up\ngossip_bind: %s\nfast: true\nplugin_timeout: 1m\n",
		c.QUIC, c.EnrollToken("hq", "agent", 1), c.CA, filepath.Join(dir, "data"), root, plugins(t), freePort(t, "127.0.0.2"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(exe, "--config", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the agent's log:\n%s", logs.String())
		}
	})
	agentIs := func(what string, ok func(coordinatortest.Agent) bool) {
		t.Helper()
		testutil.Eventually(t, 90*time.Second, func() bool {
			select {
			case err := <-exited:
				t.Fatalf("the agent process ended (%v) while waiting for %s", err, what)
			default:
			}
			as := c.Agents("hq")
			return len(as) == 1 && ok(as[0])
		}, "%s: %+v", what, c.Agents("hq"))
	}
	agentIs("the agent checked in as 1.0.0-e2e", func(a coordinatortest.Agent) bool { return a.Version == "1.0.0-e2e" })

	// Not an agent: a script that cannot say a version.
	broken := c.Upload("outpost-1.5.0.tar.gz", agentPackage(t, []byte("#!/bin/sh\necho this is not outpost-agent >&2\nexit 3\n")))
	rev := c.Apply("hq", agentPackageYAML("1.5.0", broken))
	agentIs("the broken upgrade refused and said", func(a coordinatortest.Agent) bool {
		return a.Revision == rev && strings.Contains(a.UpgradeProblem, "the new executable at "+exe+" was refused, so version 1.0.0-e2e runs on: asking its version") &&
			strings.Contains(a.UpgradeProblem, "this is not outpost-agent")
	})
	if a := c.Agents("hq")[0]; a.Version != "1.0.0-e2e" {
		t.Fatalf("after a refused upgrade the agent reports version %q", a.Version)
	}

	// The real next version.
	b, err = os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}
	good := c.Upload("outpost-2.0.0.tar.gz", agentPackage(t, b))
	rev = c.Apply("hq", agentPackageYAML("2.0.0", good))
	agentIs("the agent runs 2.0.0-e2e, compliant with the revision that brought it", func(a coordinatortest.Agent) bool {
		return a.Version == "2.0.0-e2e" && a.UpgradeProblem == "" && a.Revision == rev && a.Compliant
	})
	// In the same process: what the service manager started goes on.
	select {
	case err := <-exited:
		t.Fatalf("the agent process ended in the upgrade: %v", err)
	default:
	}
	running, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
	if err != nil || running != exe {
		t.Fatalf("process %d runs %q (%v), want the upgraded %s", cmd.Process.Pid, running, err, exe)
	}
	if !strings.Contains(logs.String(), `"restarting into the new agent executable"`) && !strings.Contains(logs.String(), "restarting into the new agent executable") {
		t.Fatalf("the agent did not say it restarted:\n%s", logs.String())
	}
}

// buildCrashingAgent builds outpost-agent as version, with a bug: it
// stops 2 s after it starts (after --version and --check-config have
// answered), as a release that fails in its first minutes would. The bug
// is one more source file of the agent package, given to go build as an
// overlay: nothing of it is in the product.
func buildCrashingAgent(t *testing.T, dir, version string) string {
	t.Helper()
	return buildAgentWithBug(t, dir, version, "zz_release_bug.go", "-bug",
		"package agent\n\nimport \"time\"\n\nfunc init() {\n\tgo func() {\n\t\ttime.Sleep(2 * time.Second)\n\t\tpanic(\"a release with a bug\")\n\t}()\n}\n")
}

// buildAgentWithBug builds outpost-agent as version with the agent
// package's file (added, or in place of the product's) holding src,
// given to go build as an overlay: nothing of the bug is in the product.
func buildAgentWithBug(t *testing.T, dir, version, file, suffix, src string) string {
	t.Helper()
	bug := filepath.Join(dir, "bug"+suffix+"-"+file)
	if err := os.WriteFile(bug, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay"+suffix+".json")
	b, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(testutil.RepoRoot(t), "agent", file): bug}})
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "outpost-agent-"+version+suffix)
	cmd := exec.Command("go", "build", "-overlay", overlay, "-o", out, "-ldflags", "-X github.com/outposthq/outpost/agent.Version="+version, "./agent/cmd/outpost-agent")
	cmd.Dir = testutil.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the agent %s with a bug: %v\n%s", version, err, b)
	}
	return out
}

// A new version that passes its checks but keeps stopping in its first
// seconds is rolled back: the service manager (this test) starts it again
// each time, and its third stop before the upgrade was kept puts the
// version it replaced back, which runs on, says why, and never restarts
// into that file again, although the package puts it back at every run.
func TestAgentRollsBackANewVersionThatKeepsStopping(t *testing.T) {
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1, bad := buildAgent(t, builds, "1.0.0-e2e"), buildCrashingAgent(t, builds, "2.0.0-e2e")

	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	exe := filepath.Join(root, "opt", "outpost", "bin", "outpost-agent")
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
	yaml := fmt.Sprintf("coordinator: %s\nenroll_token: %s\nca_fingerprint: %s\ndata_dir: %s\nroot: %s\nplugins_dir: %s\nhostname: pc-back\ngossip_bind: %s\nfast: true\nplugin_timeout: 1m\n",
		c.QUIC, c.EnrollToken("hq", "agent", 1), c.CA, filepath.Join(dir, "data"), root, plugins(t), freePort(t, "127.0.0.3"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The service manager: it starts the agent again whenever it stops,
	// as systemd's Restart=always does.
	var logs syncBuffer
	var mu sync.Mutex
	starts := 0
	var current *exec.Cmd
	quit := make(chan struct{})
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		for {
			cmd := exec.Command(exe, "--config", config)
			cmd.Stdout, cmd.Stderr = &logs, &logs
			dieWithParent(cmd)
			if err := cmd.Start(); err != nil {
				t.Errorf("start the agent: %v", err)
				return
			}
			mu.Lock()
			starts++
			current = cmd
			mu.Unlock()
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
		mu.Lock()
		current.Process.Signal(syscall.SIGTERM)
		mu.Unlock()
		<-supervised
		if t.Failed() {
			t.Logf("the agent's log:\n%s", logs.String())
		}
	})
	agentIs := func(what string, ok func(coordinatortest.Agent) bool) {
		t.Helper()
		testutil.Eventually(t, 120*time.Second, func() bool {
			as := c.Agents("hq")
			return len(as) == 1 && ok(as[0])
		}, "%s: %+v", what, c.Agents("hq"))
	}
	agentIs("the agent checked in as 1.0.0-e2e", func(a coordinatortest.Agent) bool { return a.Version == "1.0.0-e2e" })

	b, err = os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	sha := c.Upload("outpost-2.0.0.tar.gz", agentPackage(t, b))
	rev := c.Apply("hq", agentPackageYAML("2.0.0", sha))
	agentIs("rolled back to 1.0.0-e2e, saying why", func(a coordinatortest.Agent) bool {
		return a.Version == "1.0.0-e2e" && a.Revision == rev &&
			strings.Contains(a.UpgradeProblem, "version 2.0.0-e2e stopped 3 times before its upgrade was kept (it must check in and run a while); rolled back to 1.0.0-e2e")
	})
	mu.Lock()
	afterRollback := starts
	mu.Unlock()
	// 1.0.0 runs on: the package puts the bad file back at each run (the
	// file differs from its manifest), and it is refused without a try.
	time.Sleep(8 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if starts != afterRollback {
		t.Fatalf("the agent was started %d more times after the rollback", starts-afterRollback)
	}
	if a := c.Agents("hq")[0]; a.Version != "1.0.0-e2e" || !strings.Contains(a.UpgradeProblem, "rolled back to 1.0.0-e2e") {
		t.Fatalf("after the rollback: %+v", a)
	}
	// What runs is 1.0.0's image, whatever the package has put at the
	// path since.
	img, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", current.Process.Pid))
	first, _ := os.ReadFile(v1)
	if err != nil || !bytes.Equal(img, first) {
		t.Fatalf("process %d does not run 1.0.0-e2e's executable (%v)", current.Process.Pid, err)
	}
}
