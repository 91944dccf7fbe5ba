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
// an item of its own policy, a file renamed into place or a symlink
// switched — and restart into it: between two runs of the policy, once no
// technician session is open (or an hour has passed), and only after the
// new executable has said its version and accepted the agent's settings
// (args, the flags it was started with, plus --check-config). A new
// executable that fails those checks is refused and said at each check-in
// until another replaces it; the agent keeps running the version it is.
// path is the one the agent was started by, symlinks kept: a symlink
// switched to another version counts as a replacement.
func WithExecutable(path string, args []string) Option {
	return func(a *Agent) {
		a.upgrade = &selfUpgrade{path: path, args: append([]string(nil), args...), notify: make(chan struct{}, 1)}
	}
}

// selfUpgrade watches the agent's executable.
type selfUpgrade struct {
	path string
	args []string
	// running is the executable as it was at start, when the system
	// cannot name the running image (runningImage).
	running os.FileInfo
	// notify is told when a new executable passed its checks (Ready).
	notify chan struct{}

	mu sync.Mutex
	// ready is the replacement that passed its checks, with its version;
	// nil when none, or when the file at path changed since.
	ready   *fileStamp
	version string
	sum     string // its SHA-256, as checked
	// refused is the replacement last refused, so that one bad file is
	// checked once; problem is why, told at check-in.
	refused *fileStamp
	problem string
	// dataDir holds what rollbacks refused (upgrade_trial.go); rollback
	// is why this version runs after one, said until an upgrade passes.
	dataDir  string
	rollback string
	// image is the running executable, opened at start: what a rollback
	// puts back (WithRunningImage).
	image *os.File
}

// WithRunningImage gives the agent its running executable, opened at
// start (where the system cannot name it once it is replaced, the file
// at start): before it restarts into a new version it keeps a copy, the
// version a rollback puts back (upgrade_trial.go).
func WithRunningImage(f *os.File) Option {
	return func(a *Agent) {
		if a.upgrade != nil {
			a.upgrade.image = f
		}
	}
}

// prepare keeps the running version and records the trial of the new
// one, right before the restart. A failure refuses the new file: without
// a copy to roll back to, an upgrade that fails could not be undone.
func (u *selfUpgrade) prepare(dataDir string) error {
	u.mu.Lock()
	ready, version, sum := u.ready, u.version, u.sum
	u.mu.Unlock()
	var err error
	if u.image == nil {
		err = errors.New("the running executable was not kept open at start")
	} else {
		err = prepareTrial(dataDir, u.path, u.image, Version, version, sum)
	}
	if err != nil {
		u.mu.Lock()
		if u.ready == ready {
			u.ready, u.version, u.sum = nil, "", ""
			u.refused = ready
			u.problem = fmt.Sprintf("the new executable at %s was not restarted into, so version %s runs on: %v", u.path, Version, err)
		}
		u.mu.Unlock()
	}
	return err
}

// fileStamp tells one file from another at the same path: a file written
// anew gets another inode or change time even where its inode number, size
// and modification time are those of the file it replaces (install -p of
// a reproducible build into a freed inode).
type fileStamp struct {
	fi    os.FileInfo
	ctime time.Time
}

func stampOf(fi os.FileInfo) *fileStamp { return &fileStamp{fi: fi, ctime: changeTime(fi)} }

func (s *fileStamp) same(o *fileStamp) bool {
	return s != nil && o != nil && os.SameFile(s.fi, o.fi) && s.fi.Size() == o.fi.Size() &&
		s.fi.ModTime().Equal(o.fi.ModTime()) && s.ctime.Equal(o.ctime)
}

// upgradeCheckEvery is how often the executable is looked at: a stat.
const upgradeCheckEvery = 30 * time.Second

// sessionWaitMax is how long an open technician session holds a restart
// back; sessionRecheck how often it is looked at meanwhile.
const (
	sessionWaitMax = time.Hour
	sessionRecheck = time.Minute
)

// runningImageFunc is runningImage; tests replace it.
var runningImageFunc = runningImage

// Problem is why the last replacement of the executable was refused; ""
// when none was, a later one passed, or the running file is back.
func (u *selfUpgrade) Problem() string {
	if u == nil {
		return ""
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.problem == "" && u.ready == nil {
		return u.rollback
	}
	return u.problem
}

// Ready is the version of a replacement that passed its checks and is
// still the file at the path (ok false when there is none).
func (u *selfUpgrade) Ready() (version string, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.version, u.ready != nil
}

// Current says whether the file at path is still the one that passed.
func (u *selfUpgrade) Current() bool {
	u.mu.Lock()
	passed := u.ready
	u.mu.Unlock()
	fi, err := os.Stat(u.path)
	return err == nil && passed.same(stampOf(fi))
}

// UpgradeCurrent says, once Run returned ErrRestart, whether the file at
// the executable's path is still the one that passed its checks: the one
// to exec.
func (a *Agent) UpgradeCurrent() bool { return a.upgrade != nil && a.upgrade.Current() }

// replaced returns the executable at the path when it is not the one
// running (through a symlink: what it points to now).
func (u *selfUpgrade) replaced() (*fileStamp, bool) {
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
	return stampOf(now), true
}

// watchExecutable looks at the executable every period. A replacement is
// checked once; while the restart into one that passed waits (for the run
// under way, for technician sessions), a later replacement takes its place
// and is checked in turn, and the running file put back, or the file
// taken away, withdraws both a pending restart and a refusal.
func (a *Agent) watchExecutable(ctx context.Context, period time.Duration, checks *prometheus.CounterVec) error {
	u := a.upgrade
	u.mu.Lock()
	u.dataDir = a.cfg.DataDir
	u.rollback = rolledBackTo(a.cfg.DataDir, Version)
	u.mu.Unlock()
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
		st, ok := u.replaced()
		u.mu.Lock()
		if !ok {
			if u.ready != nil || u.refused != nil {
				a.log.Info("the agent's executable is the running one again, or gone: no upgrade pending", "path", u.path)
			}
			u.ready, u.version, u.sum, u.refused, u.problem = nil, "", "", nil, ""
			u.mu.Unlock()
			continue
		}
		seen := st.same(u.ready) || st.same(u.refused)
		if !seen && u.ready != nil {
			u.ready, u.version, u.sum = nil, "", "" // replaced again: check what is there now
		}
		u.mu.Unlock()
		if seen {
			continue
		}
		// A version rolled back before is not tried again.
		var version string
		var err error
		sum, herr := fileSHA256(u.path)
		if herr != nil {
			err = fmt.Errorf("read it: %w", herr)
		} else if why, ok := refusedFor(u.dataDir, sum); ok {
			err = errors.New(why)
		} else {
			version, err = checkExecutable(ctx, u.path, u.args)
		}
		if ctx.Err() != nil {
			return nil
		}
		// A file replaced while it was being checked is not the one that
		// answered: look again at the next tick.
		if after, ok := u.replaced(); !ok || !after.same(st) {
			continue
		}
		u.mu.Lock()
		if err != nil {
			u.refused = st
			u.problem = fmt.Sprintf("the new executable at %s was refused, so version %s runs on: %v", u.path, Version, err)
			u.mu.Unlock()
			checks.WithLabelValues("refused").Inc()
			a.log.Error("new agent executable refused; running on", "path", u.path, "version", Version, "err", err)
			continue
		}
		u.ready, u.version, u.sum, u.refused, u.problem = st, version, sum, nil, ""
		u.mu.Unlock()
		checks.WithLabelValues("passed").Inc()
		a.log.Info("new agent executable passed its checks; restarting into it after the current work", "path", u.path, "from", Version, "to", version)
		select {
		case u.notify <- struct{}{}:
		default:
		}
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
