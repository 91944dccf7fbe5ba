package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrRestart is what Run returns, after stopping as for a signal, when the
// agent's executable was replaced on disk by a new one that passed its
// checks: the caller starts the new one in its place (cmd/outpost-agent
// execs it, keeping the process id its service manager knows).
var ErrRestart = errors.New("the agent's executable was replaced by a new version")

// WithExecutable lets the agent notice that the executable it runs from,
// at path, is replaced on disk — an upgrade of its package, by hand or as
// an item of its own policy — and restart into it: between two runs of the
// policy, once no technician session is open (or an hour has passed), and
// only after the new executable has said its version and accepted the
// agent's settings (args, the flags it was started with, plus
// --check-config). A new executable that fails those checks is refused
// and said at each check-in until another replaces it; the agent keeps
// running the version it is.
func WithExecutable(path string, args []string) Option {
	return func(a *Agent) {
		a.upgrade = &selfUpgrade{path: path, args: append([]string(nil), args...), restart: make(chan string, 1)}
	}
}

// selfUpgrade watches the agent's executable.
type selfUpgrade struct {
	path string
	args []string
	// running is the executable as it was at start, when the system
	// cannot name the running image (running).
	running os.FileInfo
	// restart carries the version of a new executable that passed its
	// checks.
	restart chan string

	mu sync.Mutex
	// refused is the replaced executable last refused, so that one bad
	// file is checked once; problem is why, told at check-in.
	refused os.FileInfo
	problem string
}

// runningImageFunc is runningImage; tests replace it.
var runningImageFunc = runningImage

// upgradeCheckEvery is how often the executable is looked at: a stat.
const upgradeCheckEvery = 30 * time.Second

// sessionWaitMax is how long an open technician session holds a restart
// back.
const sessionWaitMax = time.Hour

// Problem is why the last replacement of the executable was refused; ""
// when none was or a later one passed.
func (u *selfUpgrade) Problem() string {
	if u == nil {
		return ""
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.problem
}

// replaced returns the executable on disk when it is not the one running.
func (u *selfUpgrade) replaced() (os.FileInfo, bool) {
	now, err := os.Stat(u.path)
	if err != nil {
		return nil, false // mid-replacement, or removed: nothing to start
	}
	running := runningImageFunc()
	if running == nil {
		running = u.running
	}
	if os.SameFile(now, running) && now.ModTime().Equal(running.ModTime()) && now.Size() == running.Size() {
		return nil, false
	}
	return now, true
}

// watch looks at the executable every period until a new one passes its
// checks, and hands its version to the loop.
func (a *Agent) watchExecutable(ctx context.Context, period time.Duration, checks *prometheus.CounterVec) error {
	u := a.upgrade
	if u.running == nil {
		fi, err := os.Stat(u.path)
		if err != nil {
			a.log.Warn("the agent's executable cannot be watched for upgrades", "path", u.path, "err", err)
			return nil
		}
		u.running = fi
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fi, ok := u.replaced()
		if !ok {
			continue
		}
		u.mu.Lock()
		seen := u.refused != nil && os.SameFile(fi, u.refused) && fi.ModTime().Equal(u.refused.ModTime())
		u.mu.Unlock()
		if seen {
			continue
		}
		version, err := checkExecutable(ctx, u.path, u.args)
		if ctx.Err() != nil {
			return nil
		}
		u.mu.Lock()
		if err != nil {
			u.refused = fi
			u.problem = fmt.Sprintf("the new executable at %s was refused, so version %s runs on: %v", u.path, Version, err)
			u.mu.Unlock()
			checks.WithLabelValues("refused").Inc()
			a.log.Error("new agent executable refused; running on", "path", u.path, "version", Version, "err", err)
			continue
		}
		u.refused, u.problem = nil, ""
		u.mu.Unlock()
		checks.WithLabelValues("passed").Inc()
		a.log.Info("new agent executable passed its checks; restarting into it after the current work", "path", u.path, "from", Version, "to", version)
		u.restart <- version
		return nil
	}
}

// checkExecutable asks a new executable its version and whether it takes
// the agent's settings: a file that does not run here (another
// architecture, cut short) or that refuses the configuration must not
// replace a working agent.
func checkExecutable(ctx context.Context, path string, args []string) (string, error) {
	run := func(what string, argv ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, path, argv...)
		var out limitedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		text := strings.TrimSpace(out.String())
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("%s did not finish in 30 s", what)
			}
			if text == "" {
				return "", fmt.Errorf("%s: %v", what, err)
			}
			return "", fmt.Errorf("%s: %v: %s", what, err, text)
		}
		return text, nil
	}
	version, err := run("asking its version", "--version")
	if err != nil {
		return "", err
	}
	if version == "" || strings.ContainsAny(version, "\n\r") || len(version) > 64 {
		return "", fmt.Errorf("asking its version: answered %q, not a version", truncateText(version, 64))
	}
	if _, err := run("checking the agent's settings with it", append(append([]string(nil), args...), "--check-config")...); err != nil {
		return "", err
	}
	return version, nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4<<10 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
