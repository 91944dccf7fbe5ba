package session

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// A shell without a terminal (outpost connect from a pipe) reads commands
// from its input like a script: no prompts, and no complaint about job
// control, which bash -i prints without a terminal; its exit status is the
// last command's.
func TestShellOverPipeIsNotInteractive(t *testing.T) {
	for _, name := range []string{"sh", "bash"} {
		t.Run(name, func(t *testing.T) {
			shell, err := exec.LookPath(name)
			if err != nil {
				t.Skipf("no %s here", name)
			}
			f := newFixture(t)
			s, err := New(Config{DataDir: t.TempDir(), MemberID: "ag-1", Shell: shell}, fixedPolicy{f.p}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- s.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			f.s = s

			tech, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_SHELL})
			for _, m := range []*wire.SessionInput{
				{Body: &wire.SessionInput_Stdin{Stdin: []byte("echo one; exit 3\n")}},
				{Body: &wire.SessionInput_CloseStdin{CloseStdin: true}},
			} {
				if err := wire.WriteMsg(tech, m); err != nil {
					t.Fatal(err)
				}
			}
			r := wait(t, res, 10*time.Second)
			if got := r.stdout.String(); got != "one\n" {
				t.Errorf("stdout %q, want %q", got, "one\n")
			}
			if got := r.stderr.String(); got != "" {
				t.Errorf("stderr %q, want nothing (no prompts, no job-control noise)", got)
			}
			if r.end.GetExitCode() != 3 || r.end.GetError() != "" {
				t.Errorf("end %v, want exit status 3", r.end)
			}
		})
	}
}
