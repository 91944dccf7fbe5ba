package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWatch is a watchdog on a clock the test moves.
func fakeWatch(limit time.Duration) (*watchdog, *time.Time, *atomic.Uint64) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var progress atomic.Uint64
	w := newWatchdog(limit, progress.Load)
	w.now = func() time.Time { return now }
	w.last = now
	return w, &now, &progress
}

// Work that goes on without a word for longer than the limit is stuck;
// each step of a run or byte that arrives, and each new thing the loop
// does, is progress, however long the whole takes.
func TestWatchdogTellsALongRunFromAStuckOne(t *testing.T) {
	w, now, progress := fakeWatch(10 * time.Minute)
	w.busy("running the policy (revision 7)")
	// A run of an hour whose steps come every five minutes is not stuck.
	for range 12 {
		*now = now.Add(5 * time.Minute)
		progress.Add(1)
		if what, stuck := w.check(); stuck {
			t.Fatalf("a run making progress is taken for stuck: %s", what)
		}
	}
	*now = now.Add(9 * time.Minute)
	w.busy("checking in")
	*now = now.Add(9 * time.Minute)
	if what, stuck := w.check(); stuck {
		t.Fatalf("a new step of the loop is not progress: %s", what)
	}
	*now = now.Add(2 * time.Minute)
	what, stuck := w.check()
	if !stuck || what != "no progress for 11m0s while checking in" {
		t.Fatalf("11 minutes without progress: %q %v", what, stuck)
	}
}

// While the loop waits for its next turn nothing has to move; a turn that
// does not come for the limit after it was due is stuck.
func TestWatchdogWatchesTheLoopsTurnWhileItWaits(t *testing.T) {
	w, now, _ := fakeWatch(10 * time.Minute)
	w.wait(now.Add(2 * time.Hour)) // a long check-in interval
	*now = now.Add(2*time.Hour + 9*time.Minute)
	if what, stuck := w.check(); stuck {
		t.Fatalf("a loop waiting for its turn is taken for stuck: %s", what)
	}
	*now = now.Add(2 * time.Minute)
	if what, stuck := w.check(); !stuck || !strings.Contains(what, "did not take its turn, due 11m0s ago") {
		t.Fatalf("a turn 11 minutes late: %q %v", what, stuck)
	}
}

// run returns what is stuck, and nothing when the agent stops.
func TestWatchdogRunStopsWithTheAgent(t *testing.T) {
	var progress atomic.Uint64
	w := newWatchdog(50*time.Millisecond, progress.Load)
	w.busy("checking in")
	what, stuck := w.run(context.Background(), 10*time.Millisecond)
	if !stuck || !strings.Contains(what, "while checking in") {
		t.Fatalf("run: %q %v", what, stuck)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.wait(time.Now().Add(time.Hour))
	done := make(chan bool)
	go func() {
		_, stuck := w.run(ctx, 10*time.Millisecond)
		done <- stuck
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if <-done {
		t.Fatal("a waiting loop was taken for stuck")
	}
}

// A hang is kept with every goroutine's stack; the next starts read when
// it was and what was stuck, and check-ins tell of it for a week.
func TestHangIsKeptWithTheStacksAndToldForAWeek(t *testing.T) {
	dir := t.TempDir()
	if _, _, ok := lastHang(dir); ok {
		t.Fatal("a hang read from an empty data directory")
	}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	path, err := keepHang(dir, "no progress for 40m0s while running the policy (revision 3)", at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "TestHangIsKeptWithTheStacksAndToldForAWeek") || !strings.Contains(string(b), "goroutine ") {
		t.Fatalf("%s holds no goroutine stacks:\n%.400s", path, b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s is %v: stacks may hold secrets", path, fi.Mode().Perm())
	}
	got, what, ok := lastHang(dir)
	if !ok || !got.Equal(at) || what != "no progress for 40m0s while running the policy (revision 3)" {
		t.Fatalf("lastHang: %v %q %v", got, what, ok)
	}
	a := &Agent{hangAt: got, hangNotice: hangNotice(dir, got, what)}
	want := "restarted itself at 2026-11-28T12:00:00Z: no progress for 40m0s while running the policy (revision 3) (goroutine stacks in " + filepath.Join(dir, hangFile) + ")"
	if s := a.toldHang(at.Add(6 * 24 * time.Hour)); s != want {
		t.Fatalf("told after six days: %q", s)
	}
	if s := a.toldHang(at.Add(8 * 24 * time.Hour)); s != "" {
		t.Fatalf("told after eight days: %q", s)
	}
	if s := (&Agent{}).toldHang(at); s != "" {
		t.Fatalf("told without a hang: %q", s)
	}

	// What a host's file says is untrusted text: control characters do
	// not reach the coordinator raw, and a damaged file is no hang.
	if err := os.WriteFile(path, []byte("2026-11-28T12:00:00Z\nstuck \x1b[31m red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, what, ok := lastHang(dir); !ok || strings.ContainsRune(what, 0x1b) {
		t.Fatalf("an escape read back raw: %q %v", what, ok)
	}
	if err := os.WriteFile(path, []byte("yesterday\nstuck\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := lastHang(dir); ok {
		t.Fatal("a hang read from a file without its time")
	}
}

// The limit is plugin_timeout and ten minutes more unless set; one that a
// single plugin call could reach is refused.
func TestHangLimitIsLongerThanAPluginCall(t *testing.T) {
	c := DefaultConfig()
	c.Coordinator = "coordinator.example.org"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.hangLimit(); got != c.PluginTimeout+10*time.Minute {
		t.Fatalf("default hang limit %v", got)
	}
	c.HangLimit = c.PluginTimeout
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "hang_limit 30m0s: want more than plugin_timeout (30m0s") {
		t.Fatalf("a hang limit a plugin call may reach: %v", err)
	}
	c.HangLimit = -time.Second
	if err := c.Validate(); err == nil {
		t.Fatal("a negative hang limit is taken")
	}
	// The agent's own waits for what it reaches take minutes when all of
	// it is away: a limit must leave room for them, but in fast mode.
	c.HangLimit = c.PluginTimeout + 4*time.Minute
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "5m0s (the agent's own waits") {
		t.Fatalf("a hang limit the agent's own waits may reach: %v", err)
	}
	c.Fast = true
	if err := c.Validate(); err != nil {
		t.Fatalf("in fast mode: %v", err)
	}
	c.Fast = false
	c.HangLimit = time.Hour
	if err := c.Validate(); err != nil || c.hangLimit() != time.Hour {
		t.Fatalf("hang_limit 1h: %v %v", err, c.hangLimit())
	}
}

// A version on trial that hung before it stopped says so in the reason of
// its rollback.
func TestRollbackSaysTheVersionHung(t *testing.T) {
	data := t.TempDir()
	bin := t.TempDir()
	exe := filepath.Join(bin, "outpost-agent")
	old := filepath.Join(bin, "running-image")
	for p, body := range map[string]string{exe: "version 2", old: "version 1"} {
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A hang before the trial began is not this version's.
	if _, err := keepHang(data, "stuck long ago", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := PrepareTrial(data, exe, old, "1.0.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	for range trialStarts {
		if _, _, err := BeginTrial(data, exe); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := keepHang(data, "no progress for 40m0s while checking in", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, back, err := BeginTrial(data, exe); err != nil || back != exe {
		t.Fatalf("no rollback: %q %v", back, err)
	}
	why := rolledBackTo(data, "1.0.0")
	if !strings.Contains(why, "stopped 3 times") || !strings.Contains(why, "the last time it hung: no progress for 40m0s while checking in (goroutine stacks in "+filepath.Join(data, hangFile)+")") {
		t.Fatalf("the rollback does not say the version hung: %q", why)
	}

	// Without a hang since the trial began, the reason says nothing of one.
	data2 := t.TempDir()
	if err := os.WriteFile(exe, []byte("version 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := keepHang(data2, "stuck long ago", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := PrepareTrial(data2, exe, old, "1.0.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	for range trialStarts + 1 {
		if _, _, err := BeginTrial(data2, exe); err != nil {
			t.Fatal(err)
		}
	}
	if why := rolledBackTo(data2, "1.0.0"); why == "" || strings.Contains(why, "hung") {
		t.Fatalf("a hang from before the trial is told: %q", why)
	}
}

// Time the agent could not run in (the laptop asleep, the process
// stopped) is not time it failed to make progress in.
func TestWatchdogDoesNotCountTimeTheAgentCouldNotRun(t *testing.T) {
	w, now, _ := fakeWatch(10 * time.Minute)
	w.pause = 5 * time.Minute
	w.busy("running the policy (revision 7)")
	for range 3 {
		*now = now.Add(30 * time.Second)
		w.check()
	}
	*now = now.Add(8 * time.Hour) // asleep
	if what, stuck := w.check(); stuck {
		t.Fatalf("a night asleep is taken for a hang: %s", what)
	}
	for range 16 {
		*now = now.Add(30 * time.Second)
		if what, stuck := w.check(); stuck {
			t.Fatalf("after the sleep: %s", what)
		}
	}
	*now = now.Add(time.Minute)
	if what, stuck := w.check(); !stuck || !strings.Contains(what, "no progress for 10m30s") {
		t.Fatalf("awake and stuck for 10m30s: %q %v", what, stuck)
	}
	w.wait(now.Add(time.Minute))
	*now = now.Add(30 * time.Second)
	w.check()
	*now = now.Add(12 * time.Hour)
	if what, stuck := w.check(); stuck {
		t.Fatalf("a turn due during a sleep: %s", what)
	}
}

// A stop waits for the agent's parts a bounded time and names those that
// did not return; parts that fail at once, however many, neither block
// each other nor the stop, and the first error is the one kept.
func TestAStopNamesThePartsThatDoNotReturn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ps parts
	errc := make(chan error, 1)
	release := make(chan struct{})
	defer close(release)
	ps.start(ctx, "technician sessions", func(context.Context) error { <-release; return nil }, errc, cancel)
	ps.start(ctx, "office roll-up", func(ctx context.Context) error { <-ctx.Done(); return nil }, errc, cancel)
	for range 5 {
		ps.start(ctx, "metrics", func(context.Context) error { return errors.New("address in use") }, errc, cancel)
	}
	<-ctx.Done() // a part that failed stopped the rest
	left := ps.wait(200 * time.Millisecond)
	if !slices.Equal(left, []string{"technician sessions"}) {
		t.Fatalf("parts left: %q; want only the one that ignores its context", left)
	}
	if err := <-errc; !strings.Contains(err.Error(), "metrics: address in use") {
		t.Fatalf("error kept: %v", err)
	}

	var done parts
	done.start(context.Background(), "office policy", func(context.Context) error { return nil }, errc, func() {})
	if left := done.wait(time.Second); left != nil {
		t.Fatalf("parts that returned are said left: %q", left)
	}
}
