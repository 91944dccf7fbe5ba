//go:build linux

package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reviewWatch sets up an agent watching path, whose running image is the
// file there now, and runs its watch until the test ends.
func reviewWatch(t *testing.T, path string) *Agent {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	old := runningImageFunc
	runningImageFunc = func() os.FileInfo { return nil } // the test binary is not path
	t.Cleanup(func() { runningImageFunc = old })
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	WithExecutable(path, []string{"--config", "/nonexistent/agent.yaml"})(a)
	a.upgrade.running = fi
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"result"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.watchExecutable(ctx, 20*time.Millisecond, checks) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func reviewScript(t *testing.T, p, body string) {
	t.Helper()
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

const reviewGood = `case "$1" in --version) echo 2.0.0;; *) echo ok;; esac` + "\n"
const reviewBad = "echo not an agent >&2\nexit 3\n"

// waitNotified waits for the watch to tell of a file that passed.
func waitNotified(a *Agent, d time.Duration) bool {
	select {
	case <-a.upgrade.notify:
		return true
	case <-time.After(d):
		return false
	}
}

// A file replaced while it is being checked (a second package manager
// run, apt then the policy) is not the one that answered: the agent never
// restarts into it unchecked. It checks what is there now and refuses it.
func TestAFileReplacedDuringItsChecksIsCheckedInTurn(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "outpost-agent")
	reviewScript(t, exe, "echo 1.0.0\n")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\n"+reviewBad), 0o755); err != nil {
		t.Fatal(err)
	}
	a := reviewWatch(t, exe)
	// The new file passes both checks; while the second runs, another
	// file is renamed into its place.
	reviewScript(t, exe, `case "$1" in --version) echo 2.0.0;; *) mv `+bad+` `+exe+`; echo ok;; esac`+"\n")
	if waitNotified(a, 3*time.Second) {
		if _, err := checkExecutable(t.Context(), exe, nil); err != nil || !a.upgrade.Current() {
			t.Fatalf("the agent is told to restart into %s, but the file there now fails the checks (%v) or is not the one checked (current %v)", exe, err, a.upgrade.Current())
		}
		return
	}
	if !strings.Contains(a.upgrade.Problem(), "not an agent") {
		t.Fatalf("the file put in place during the checks was not checked in turn: problem %q", a.upgrade.Problem())
	}
	if _, ok := a.upgrade.Ready(); ok {
		t.Fatal("a restart is pending into a file that failed its checks")
	}
}

// Once a new file passed, the restart may wait an hour for technician
// sessions. A file replaced meanwhile withdraws the pending restart and is
// checked in turn.
func TestAFileReplacedWhileItsRestartWaitsWithdrawsIt(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "outpost-agent")
	reviewScript(t, exe, "echo 1.0.0\n")
	a := reviewWatch(t, exe)
	reviewScript(t, exe, reviewGood)
	if !waitNotified(a, 10*time.Second) {
		t.Fatal("no restart")
	}
	if v, ok := a.upgrade.Ready(); !ok || v != "2.0.0" {
		t.Fatalf("ready %q %v", v, ok)
	}
	reviewScript(t, exe, reviewBad)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if a.upgrade.Problem() != "" {
			if _, ok := a.upgrade.Ready(); ok || a.upgrade.Current() {
				t.Fatal("the restart into the file that passed is still pending after it was replaced")
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := checkExecutable(t.Context(), exe, nil)
	t.Fatalf("a restart is pending, the file at %s was replaced by one that fails the checks (%v), and nothing noticed: Problem() = %q", exe, err, a.upgrade.Problem())
}

// A refused file that goes away (the package taken back out, the old
// binary put back) leaves the agent saying it refused an upgrade forever:
// agent search --state upgrade-refused lists it until it restarts.
func TestUpgradeProblemClearsWhenTheRefusedFileIsGone(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "outpost-agent")
	reviewScript(t, exe, "echo 1.0.0\n")
	keep := filepath.Join(dir, "outpost-agent.running")
	if err := os.Link(exe, keep); err != nil { // the running file, as a backup
		t.Fatal(err)
	}
	a := reviewWatch(t, exe)
	reviewScript(t, exe, reviewBad)
	deadline := time.Now().Add(10 * time.Second)
	for a.upgrade.Problem() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the bad file was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The running file is put back: nothing is refused any more.
	if err := os.Rename(keep, exe); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if a.upgrade.Problem() == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the running executable is back at %s, yet the agent still reports: %q", exe, a.upgrade.Problem())
}
