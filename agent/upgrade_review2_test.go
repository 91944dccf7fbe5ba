package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// After a rollback the agent says why it runs the old version "until an
// upgrade passes". A file that passes and is then taken back before the
// restart (the running file put back: the pending restart is withdrawn)
// clears that for good in this process: the agent still runs the version
// it was rolled back to, but its check-ins say nothing, and after its next
// restart they say it again.
func TestTheRollbackIsSaidAgainWhenAPassedUpgradeIsWithdrawn(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	rs, _ := json.Marshal([]refusal{{SHA256: strings.Repeat("0", 64), Version: "2.0.0", Reason: "version 2.0.0 stopped 3 times; rolled back", At: time.Now(), RolledBackTo: Version}})
	os.MkdirAll(upgradeDir(data), 0o700)
	if err := os.WriteFile(filepath.Join(upgradeDir(data), "refused.json"), rs, 0o600); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "outpost-agent")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho 1.0.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := exe + ".orig"
	if err := os.Link(exe, orig); err != nil { // the running file, to put back
		t.Fatal(err)
	}
	fi, _ := os.Stat(exe)
	old := runningImageFunc
	runningImageFunc = func() os.FileInfo { return nil }
	t.Cleanup(func() { runningImageFunc = old })
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.cfg.DataDir = data
	WithExecutable(exe, nil)(a)
	a.upgrade.running = fi
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.watchExecutable(ctx, 20*time.Millisecond, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"result"}))
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor := func(what string, ok func() bool) bool {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if ok() {
				return true
			}
		}
		return false
	}
	if !waitFor("", func() bool { return strings.Contains(a.upgrade.Problem(), "rolled back") }) {
		t.Fatalf("the rolled-back version does not say so: %q", a.upgrade.Problem())
	}
	// A new version passes...
	if err := os.WriteFile(exe+".new", []byte("#!/bin/sh\ncase \"$1\" in --version) echo 3.0.0;; *) echo ok;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Rename(exe+".new", exe)
	select {
	case <-a.upgrade.notify:
	case <-time.After(5 * time.Second):
		t.Fatal("the new file did not pass")
	}
	// ...and the running file is put back before the restart.
	if err := os.Rename(orig, exe); err != nil {
		t.Fatal(err)
	}
	if !waitFor("", func() bool { _, ok := a.upgrade.Ready(); return !ok }) {
		t.Fatal("the pending restart was not withdrawn")
	}
	time.Sleep(100 * time.Millisecond)
	if p := a.upgrade.Problem(); !strings.Contains(p, "rolled back") {
		t.Fatalf("still the rolled-back version, no upgrade pending, yet its check-ins say %q (a restart would say it was rolled back again)", p)
	}
}
