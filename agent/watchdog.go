package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/safetext"
)

// An agent that has stopped making progress (a deadlock, a call that
// never returns) restarts itself: it writes every goroutine's stack to
// <data_dir>/hang.txt, says why in its log and stops with an error, and
// its service manager starts it again. A version on trial after an
// upgrade that hangs is so counted as one that stopped, and rolled back
// after as many. The next check-ins tell the coordinator of the hang for
// a week (agent show).
//
// Progress is what the loop does: each turn, each step of a policy run
// (an item begun, a plugin call made or answered) and each artifact byte
// that arrives or is read from disk to be checked. Between two steps a run waits at most one plugin call
// (plugin_timeout), so the default limit is that and ten minutes more;
// while the loop waits for its next turn, it is due at most that long
// after the turn's time.

// ErrHung is what Run returns when the agent made no progress for its
// hang limit.
var ErrHung = errors.New("the agent made no progress and stops, to be started again by its service manager")

// hangFile holds what the last hang was, and every goroutine's stack.
const hangFile = "hang.txt"

// hangTold is how long after a hang check-ins tell of it.
const hangTold = 7 * 24 * time.Hour

// hangMargin is what the default hang limit adds to plugin_timeout.
const hangMargin = 10 * time.Minute

// coordinatorWait bounds what the loop waits for the coordinator in one
// step (a policy, a download URL): a coordinator that is away is not a
// hang of the agent's.
var coordinatorWait = time.Minute

// minHangMargin is what a hang limit must add to plugin_timeout at
// least: the loop's own waits in one step — for the coordinator
// (coordinatorWait, 10 s for a check-in), a relay's answer (a minute),
// peers (20 s), a plugin's start (30 s) — take minutes when everything
// it reaches is away. In fast mode (tests, the demo) they are not
// counted, so that a hang is caught in seconds.
func (c Config) minHangMargin() time.Duration {
	if c.Fast {
		return 0
	}
	return 5 * time.Minute
}

// maxStacks bounds the goroutine stacks written for a hang.
const maxStacks = 8 << 20

// hangLimit is how long the agent may go without progress.
func (c Config) hangLimit() time.Duration {
	if c.HangLimit > 0 {
		return c.HangLimit
	}
	return c.PluginTimeout + hangMargin
}

type watchdog struct {
	limit    time.Duration
	progress func() uint64 // grows as runs and downloads go on
	now      func() time.Time

	mu    sync.Mutex
	doing string    // what the loop does now; "" while it waits for its next turn
	until time.Time // while it waits: when the turn is due at the latest
	last  time.Time // when progress was last seen
	seen  uint64
	// checked is when check last ran; a gap longer than pause since then
	// (the computer asleep, the process stopped or starved) is no time
	// the agent had to make progress in: last and until move by it. 0:
	// not looked for.
	checked time.Time
	pause   time.Duration
}

func newWatchdog(limit time.Duration, progress func() uint64) *watchdog {
	w := &watchdog{limit: limit, progress: progress, now: time.Now}
	w.last = w.now()
	return w
}

// busy says what the loop does now; saying it is progress.
func (w *watchdog) busy(doing string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.doing, w.last = doing, w.now()
	w.mu.Unlock()
}

// wait says the loop waits for its next turn, due by until at the latest.
func (w *watchdog) wait(until time.Time) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.doing, w.until, w.last = "", until, w.now()
	w.mu.Unlock()
}

// check says what is stuck, if something is.
func (w *watchdog) check() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if gap := now.Sub(w.checked); w.pause > 0 && !w.checked.IsZero() && gap > w.pause {
		w.last, w.until = w.last.Add(gap), w.until.Add(gap)
	}
	w.checked = now
	if p := w.progress(); p != w.seen {
		w.seen, w.last = p, now
	}
	if w.doing == "" {
		if late := now.Sub(w.until); late > w.limit {
			return fmt.Sprintf("its loop did not take its turn, due %s ago", late.Round(time.Second)), true
		}
		return "", false
	}
	if idle := now.Sub(w.last); idle > w.limit {
		return fmt.Sprintf("no progress for %s while %s", idle.Round(time.Second), w.doing), true
	}
	return "", false
}

// run looks every tick until ctx ends or something is stuck; then it
// keeps the goroutines' stacks and returns what is stuck.
func (w *watchdog) run(ctx context.Context, tick time.Duration) (string, bool) {
	w.mu.Lock()
	w.pause = 10 * tick
	w.mu.Unlock()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", false
		case <-t.C:
		}
		if what, stuck := w.check(); stuck {
			return what, true
		}
	}
}

// keepHang writes what is stuck and every goroutine's stack to
// <dataDir>/hang.txt: its first line is when, its second what.
func keepHang(dataDir, what string, at time.Time) (string, error) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= maxStacks {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	path := filepath.Join(dataDir, hangFile)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\nagent %s, goroutine stacks:\n\n", at.UTC().Format(time.RFC3339), what, Version)
	b.Write(buf)
	return path, fsutil.WriteFileAtomic(path, []byte(b.String()), 0o600)
}

// lastHang reads when the last hang was and what was stuck, from
// hang.txt's first two lines.
func lastHang(dataDir string) (time.Time, string, bool) {
	f, err := os.Open(filepath.Join(dataDir, hangFile))
	if err != nil {
		return time.Time{}, "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 4096)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 2 {
		return time.Time{}, "", false
	}
	at, err := time.Parse(time.RFC3339, lines[0])
	if err != nil {
		return time.Time{}, "", false
	}
	return at, safetext.Field(lines[1], 300), true
}

// hangNotice is what check-ins say of a hang at at, for a week after it.
func hangNotice(dataDir string, at time.Time, what string) string {
	return fmt.Sprintf("restarted itself at %s: %s (goroutine stacks in %s)", at.UTC().Format(time.RFC3339), what, filepath.Join(dataDir, hangFile))
}

// toldHang is what a check-in now says of the last hang: nothing a week
// after it.
func (a *Agent) toldHang(now time.Time) string {
	if a.hangNotice == "" || now.Sub(a.hangAt) > hangTold || a.hangAt.After(now.Add(time.Hour)) {
		return ""
	}
	return a.hangNotice
}

// parts runs the agent's parts (the coordinator link, sessions, gossip's
// policy and roll-up, listeners), each in a goroutine of its own, and
// knows which have not returned: a stop waits for them a bounded time,
// so a part that ignores its context cannot keep a stopping agent, or
// one restarting into an upgrade, alive and idle for ever.
type parts struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]int
}

// start runs f as the part called name; an error it returns calls
// failed and is sent to errc if errc has room (the first is the one to
// tell: the others are most often what the stop it caused made of them).
func (p *parts) start(ctx context.Context, name string, f func(context.Context) error, errc chan<- error, failed func()) {
	p.mu.Lock()
	if p.running == nil {
		p.running = map[string]int{}
	}
	p.running[name]++
	p.mu.Unlock()
	p.wg.Go(func() {
		defer func() {
			p.mu.Lock()
			if p.running[name]--; p.running[name] == 0 {
				delete(p.running, name)
			}
			p.mu.Unlock()
		}()
		if err := f(ctx); err != nil {
			select {
			case errc <- fmt.Errorf("%s: %w", name, err):
			default:
			}
			failed()
		}
	})
}

// wait waits up to d for every part to return, and says which have not,
// in order of name; none when all returned.
func (p *parts) wait(d time.Duration) []string {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(d):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	left := slices.Sorted(maps.Keys(p.running))
	if len(left) == 0 {
		// Returned between the timer and the lock.
		return nil
	}
	return left
}
