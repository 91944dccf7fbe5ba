package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// reviewStartAgent starts the agent at exe (as given: a symlink stays one)
// against c in office hq, and returns a channel that gets its exit.
func reviewStartAgent(t *testing.T, c *coordinatortest.Harness, exe, dir string) (*exec.Cmd, chan error, *syncBuffer) {
	t.Helper()
	config := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf("coordinator: %s\nenroll_token: %s\nca_fingerprint: %s\ndata_dir: %s\nroot: %s\nplugins_dir: %s\nhostname: pc-rv\ngossip_bind: %s\nfast: true\n",
		c.QUIC, c.EnrollToken("hq", "agent", 1), c.CA, filepath.Join(dir, "data"), filepath.Join(dir, "root"), plugins(t), freePort(t, "127.0.0.2"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(exe, "--config", config)
	cmd.Stdout, cmd.Stderr = logs, logs
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
		}
		if t.Failed() {
			t.Logf("the agent's log:\n%s", logs.String())
		}
	})
	return cmd, exited, logs
}

func reviewCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Package managers that keep versions side by side (/opt/outpost/bin ->
// versions/1.0) upgrade by switching a symlink, renamed into place. An
// agent started through the symlink watches the file it resolved to at
// start (os.Executable resolves symlinks on Linux), which never changes:
// the upgrade is never noticed.
func TestAgentStartedThroughASymlinkUpgradesWhenItIsSwitched(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1, v2 := buildAgent(t, builds, "1.0.0-e2e"), buildAgent(t, builds, "2.0.0-e2e")
	dir := t.TempDir()
	opt := filepath.Join(dir, "opt", "outpost")
	reviewCopy(t, v1, filepath.Join(opt, "versions", "1", "outpost-agent"))
	reviewCopy(t, v2, filepath.Join(opt, "versions", "2", "outpost-agent"))
	link := filepath.Join(opt, "bin", "outpost-agent")
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink("../versions/1/outpost-agent", link); err != nil {
		t.Fatal(err)
	}
	_, exited, _ := reviewStartAgent(t, c, link, dir)
	version := func() string {
		select {
		case err := <-exited:
			t.Fatalf("the agent process ended: %v", err)
		default:
		}
		if as := c.Agents("hq"); len(as) == 1 {
			return as[0].Version
		}
		return ""
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return version() == "1.0.0-e2e" }, "the agent checked in as 1.0.0-e2e")

	// The upgrade: the symlink now leads to version 2 (ln -s, then mv -T).
	tmp := link + ".new"
	if err := os.Symlink("../versions/2/outpost-agent", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	// In fast mode the agent looks at its executable every 500 ms.
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		if version() == "2.0.0-e2e" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("12 s after %s was switched to version 2, the agent still runs %q", link, version())
}

// A file that passed the checks is not the file exec'd: the agent execs
// whatever is at the path by then. Here the file that passed is replaced,
// while its second check runs, by one that is not an agent; the agent
// execs it and the process is gone (the service manager then restarts the
// same broken file, forever).
func TestAgentNeverExecsAFileThatDidNotPassItsChecks(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", nil)
	builds := t.TempDir()
	v1 := buildAgent(t, builds, "1.0.0-e2e")
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "outpost-agent")
	reviewCopy(t, v1, exe)
	_, exited, _ := reviewStartAgent(t, c, exe, dir)
	testutil.Eventually(t, 30*time.Second, func() bool {
		as := c.Agents("hq")
		return len(as) == 1 && as[0].Version == "1.0.0-e2e"
	}, "the agent checked in")

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho this is not outpost-agent >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	next := exe + ".new"
	script := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in --version) echo 2.0.0-e2e;; *) mv %s %s; echo ok;; esac\n", bad, exe)
	if err := os.WriteFile(next, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, exe); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("the agent exec'd a file that never passed its checks and is gone: %v", err)
	case <-time.After(8 * time.Second):
	}
}
