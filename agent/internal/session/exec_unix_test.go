//go:build unix

package session

import (
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// The agent may run without PATH (sessionEnv gives the command one), and
// the command is looked up on the session's PATH, not the agent's empty
// one: `outpost exec HOST -- systemctl status outpost-agent`, the README's
// example, finds systemctl.
func TestCommandsAreFoundOnTheSessionsPath(t *testing.T) {
	t.Setenv("PATH", "")
	f := newFixture(t)
	for _, term := range []*wire.Terminal{nil, {Term: "xterm"}} {
		_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"sh", "-c", "echo found"}, Terminal: term})
		r := wait(t, res, 10*time.Second)
		if r.end.GetExitCode() != 0 || !strings.Contains(r.stdout.String(), "found") {
			t.Errorf("exec sh (terminal %v) on an agent without PATH: exit %d, error %q; want it found on the session's PATH", term != nil, r.end.GetExitCode(), r.end.GetError())
		}
	}
}

// A command that is not there exits 127, as a shell says, on a terminal
// (outpost exec -t) as over pipes: scripts see one status for one
// mistake.
func TestAMissingCommandExits127OnATerminalToo(t *testing.T) {
	f := newFixture(t)
	_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/nonexistent/tool"}, Terminal: &wire.Terminal{Term: "xterm"}})
	r := wait(t, res, 10*time.Second)
	if r.end.GetExitCode() != 127 {
		t.Fatalf("exec -t /nonexistent/tool: exit %d, error %q; want 127 as without -t", r.end.GetExitCode(), r.end.GetError())
	}
}
