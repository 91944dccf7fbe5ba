//go:build unix

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A new executable is taken only when it says one version and accepts the
// agent's settings; the reason for a refusal names the step and what the
// file said.
func TestNewExecutableIsCheckedBeforeTheAgentRestartsIntoIt(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"--config", "/etc/outpost/agent.yaml"}
	// The good one records how it was asked.
	asked := filepath.Join(dir, "asked")
	good := script("good", `echo "$@" >> `+asked+`
case "$1" in --version) echo 2.1.0;; *) echo "the settings are valid";; esac
`)
	if v, err := checkExecutable(t.Context(), good, args); err != nil || v != "2.1.0" {
		t.Fatalf("good: %q %v", v, err)
	}
	if b, _ := os.ReadFile(asked); string(b) != "--version\n--config /etc/outpost/agent.yaml --check-config\n" {
		t.Fatalf("good was asked %q", b)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"not an agent":         {"echo nope >&2; exit 3\n", "asking its version: exit status 3: nope"},
		"two lines":            {"echo 2.1.0; echo extra\n", `asking its version: answered "2.1.0\nextra", not a version`},
		"no version":           {"exit 0\n", `asking its version: answered "", not a version`},
		"refuses the settings": {`case "$1" in --version) echo 2.1.0;; *) echo "line 4: unknown key \"roots\"" >&2; exit 1;; esac` + "\n", `checking the agent's settings with it: exit status 1: line 4: unknown key "roots"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := checkExecutable(t.Context(), script(strings.ReplaceAll(name, " ", "-"), tc.body), args)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := checkExecutable(t.Context(), filepath.Join(dir, "missing"), args); err == nil || !strings.Contains(err.Error(), "asking its version") {
		t.Fatalf("missing file: %v", err)
	}
}

// replaced tells a file put in place of the running one (a rename, as
// dpkg and the package plugin do) from the same file.
func TestReplacedExecutableIsNoticed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "outpost-agent")
	if err := os.WriteFile(p, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	// The running image stands for the file at start here: this test's
	// own /proc/self/exe is the test binary, not p.
	u := &selfUpgrade{path: p, running: fi}
	old := runningImageFunc
	runningImageFunc = func() os.FileInfo { return nil }
	t.Cleanup(func() { runningImageFunc = old })
	if _, ok := u.replaced(); ok {
		t.Fatal("the same file counts as replaced")
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.replaced(); !ok {
		t.Fatal("a file renamed into place is not noticed")
	}
	os.Remove(p)
	if _, ok := u.replaced(); ok {
		t.Fatal("a missing file counts as a replacement to start")
	}
}
