package installer

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// install.sh is also how a computer is upgraded by hand, and it is what
// puts the agent in place on a computer without dpkg. It wrote each file
// straight to its final path (install(1) unlinks the old file and writes
// the new one in place), so a run cut short — a kill, a power cut, a full
// disk, here a file size limit — left a truncated /usr/bin/outpost-agent
// where a working agent was: systemd starts it at the next boot, it
// cannot even be executed, and the agent (which rolls back a bad version
// only once it runs) never comes back. A half-written agent.yaml was
// worse: the next run keeps "the existing" one. dpkg writes beside the
// file and renames; install.sh must too, so that every file is either the
// old one or the complete new one.
func TestInstallScriptCutShortKeepsThePreviousFiles(t *testing.T) {
	cfg := testConfig(t)
	if _, err := Build(cfg); err != nil {
		t.Fatal(err)
	}
	agent, err := os.ReadFile(filepath.Join(cfg.OutDir, "outpost-agent"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	old := []byte("#!/bin/sh\necho the agent installed before\n")
	bin := filepath.Join(root, "usr/bin/outpost-agent")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, old, 0o755); err != nil {
		t.Fatal(err)
	}
	// The disk takes 4 KiB of any one file: less than the agent binary.
	const limitBlocks = 8 // of 512 bytes
	if len(agent) <= limitBlocks*512 {
		t.Fatalf("the agent stand-in is %d bytes: too small for the test", len(agent))
	}
	run := func(limit string) ([]byte, error) {
		cmd := exec.Command("sh", "-c", limit+`exec sh "$0"`, filepath.Join(cfg.OutDir, "install.sh"))
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		return cmd.CombinedOutput()
	}
	out, err := run("ulimit -f 8 || exit 99; ")
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 99 {
		t.Skip("cannot limit the file size with ulimit -f")
	}
	if err == nil {
		t.Fatalf("install.sh was not cut short by the file size limit; the test's limit is wrong:\n%s", out)
	}
	t.Logf("install.sh cut short: %v\n%s", err, out)
	if got, err := os.ReadFile(bin); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("a run of install.sh cut short left %s as %d bytes (%v), neither the agent installed before (%d bytes) nor the new one (%d)",
			bin, len(got), err, len(old), len(agent))
	}

	if left, _ := filepath.Glob(filepath.Join(root, "usr/bin/.*")); len(left) > 0 {
		t.Errorf("install.sh cut short left %v", left)
	}

	// The next run completes, and leaves nothing beside the files.
	if out, err := run(""); err != nil {
		t.Fatalf("install.sh again: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(bin); !bytes.Equal(got, agent) {
		t.Fatalf("install.sh again did not install the new agent")
	}
	for _, dir := range []string{"usr/bin", "usr/lib/outpost/plugins", "etc/outpost", "lib/systemd/system"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasPrefix(n, ".") || strings.Contains(n, "new") || strings.Contains(n, "tmp") {
				t.Errorf("install.sh left %s in %s", n, dir)
			}
		}
	}
	for path, mode := range map[string]os.FileMode{"usr/bin/outpost-agent": 0o755, "usr/lib/outpost/plugins/outpost-plugin-package": 0o755,
		"etc/outpost/agent.yaml": 0o600, "lib/systemd/system/outpost-agent.service": 0o644} {
		if fi, err := os.Stat(filepath.Join(root, path)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", path, fi, err, mode)
		}
	}
}
