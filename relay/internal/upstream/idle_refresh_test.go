package upstream

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// timerClock is a settable clock whose timers fire when it is advanced
// past them, for Run's schedule.
type timerClock struct {
	mu      sync.Mutex
	t, real time.Time
	waiters []timerWaiter
}

type timerWaiter struct {
	at time.Time
	c  chan time.Time
}

func newTimerClock() *timerClock {
	now := time.Now()
	return &timerClock{t: now, real: now}
}

func (c *timerClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// offset is how far the clock is ahead of the time it started at.
func (c *timerClock) offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Sub(c.real)
}

func (c *timerClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.t.Add(d)
	if !at.After(c.t) {
		ch <- c.t
		return ch
	}
	c.waiters = append(c.waiters, timerWaiter{at, ch})
	return ch
}

func (c *timerClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.t) {
			kept = append(kept, w)
		} else {
			w.c <- c.t
		}
	}
	c.waiters = kept
}

// pending is how many timers have not fired; an abandoned one counts
// until its time comes.
func (c *timerClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// shiftedSource dates the credentials src mints by the test's clock, as a
// coordinator whose clock agrees with the relay's would: they stay valid
// at MinIO (15 real minutes) while the test's clock runs hours ahead.
type shiftedSource struct {
	src   CredentialSource
	clock *timerClock
}

func (s shiftedSource) FileServer(ctx context.Context) (*wire.FileServerResponse, error) {
	r, err := s.src.FileServer(ctx)
	if err == nil && r.ExpiresUnix != 0 {
		r.ExpiresUnix += int64(s.clock.offset() / time.Second)
	}
	return r, err
}

// A relay reads the file server in bursts: a rollout, then nothing for
// hours. Its credentials were refreshed only by a read that found them
// due, so an idle relay's expired after an hour, and the first read after
// that needed the coordinator at that very moment; with the coordinator
// out of reach then (a WAN that drops for a few minutes), a read failed
// that the file server would have answered. Run keeps them fresh while
// idle; over a long outage it backs off and says so once.
func TestCredentialsAreRefreshedWhileIdle(t *testing.T) {
	setCredentialTimeout(t, 200*time.Millisecond)
	m := testutil.StartMinIO(t)
	m.MakeBucket(t, bucket)
	data := []byte("an artifact asked for after an idle hour")
	hash := put(t, m.Client(t), bucket, data)

	clock := newTimerClock()
	src := &offlineSource{sts: &stsSource{m: m, bucket: func() string { return bucket }, endpoint: func() string { return m.Endpoint }}}
	logs := &testutil.Logs{}
	u, err := New(shiftedSource{src, clock}, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	u.now, u.after = clock.now, clock.after
	if got := read(t, u, hash); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	idle := func() {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() bool { return clock.pending() >= 1 }, "Run is not waiting for its next refresh")
	}

	// Nothing reads. The 15-minute credentials reach their refresh point.
	clock.advance(12*time.Minute + time.Second)
	testutil.Eventually(t, 20*time.Second, func() bool { return src.calls.Load() == 2 },
		"credentials not refreshed at their refresh point while the relay was idle (%d fetches)", src.calls.Load())
	idle()

	// The coordinator goes away; a read comes after the first
	// credentials would have ended, within the second's life.
	src.offline.Store(true)
	clock.advance(5 * time.Minute)
	got, err := openWithin(u, hash)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a read with the coordinator away, 17 minutes after the last read: %v", err)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("the read asked the coordinator (%d fetches, want 2)", n)
	}

	// Away for two hours: the credentials run out, and Run keeps asking,
	// backing off, with a warning when refreshing first fails and one
	// when the credentials run out.
	before := src.calls.Load()
	for range 120 {
		idle()
		clock.advance(time.Minute)
	}
	idle()
	asked := src.calls.Load() - before
	if asked < 10 || asked > 45 {
		t.Fatalf("the coordinator was asked %d times in two hours away; want it asked again and again, backing off to minutes", asked)
	}
	warned := logs.Count(slog.LevelWarn, func(msg string) bool { return strings.Contains(msg, "credentials") })
	if warned != 2 {
		t.Fatalf("%d warnings about credentials over two hours; want 2: refresh failing, then credentials expired", warned)
	}

	// Back: Run takes new credentials by itself, and says so.
	src.offline.Store(false)
	clock.advance(5 * time.Minute)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return logs.Count(slog.LevelInfo, func(msg string) bool { return strings.Contains(msg, "credentials") && strings.Contains(msg, "again") }) == 1
	}, "no new credentials after the coordinator came back")
	if got, err := openWithin(u, hash); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the coordinator came back: %v", err)
	}
}
