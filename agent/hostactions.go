package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// hostActions is what a technician with the control right may have this
// agent do (session.HostActions): run the policy now, and reboot.
type hostActions struct{ a *Agent }

// Sync has the agent's loop take the newest policy and run it now, and
// gives that run's report. A run already under way finishes first.
func (h hostActions) Sync(ctx context.Context) (*wire.Report, error) {
	done := make(chan *wire.Report, 1)
	select {
	case h.a.syncs <- done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-done:
		if r == nil {
			return nil, errors.New("this host has no policy yet: its office has none, or the coordinator was not reached")
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Reboot schedules the host's reboot with the operating system's own
// shutdown command, which tells logged-in users and survives the agent.
func (h hostActions) Reboot(ctx context.Context, reason string, delay time.Duration) error {
	if runtime.GOOS == "windows" {
		return h.a.power(ctx, "shutdown", "/r", "/t", strconv.Itoa(int(delay/time.Second)), "/c", reason)
	}
	when := "now"
	if delay > 0 {
		when = "+" + strconv.Itoa(int((delay+time.Minute-1)/time.Minute))
	}
	return h.a.power(ctx, "shutdown", "-r", when, reason)
}

// CancelReboot calls off a reboot scheduled before.
func (h hostActions) CancelReboot(ctx context.Context) error {
	if runtime.GOOS == "windows" {
		return h.a.power(ctx, "shutdown", "/a")
	}
	return h.a.power(ctx, "shutdown", "-c")
}

// runPower runs the shutdown command argv. An agent whose plugins install
// under a root other than / is not the host's own (a test, a container's
// view): it does not reboot the machine it runs on.
func (a *Agent) runPower(ctx context.Context, argv ...string) error {
	if a.cfg.Root != "/" {
		return fmt.Errorf("not rebooting: the plugins' root is %s, not /", a.cfg.Root)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		if len(out) > 0 {
			return fmt.Errorf("%s: %w: %s", argv[0], err, clipOutput(out))
		}
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	return nil
}

func clipOutput(b []byte) string {
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}

// WithPower replaces the command that reboots the host (tests).
func WithPower(run func(ctx context.Context, argv ...string) error) Option {
	return func(a *Agent) { a.power = run }
}
