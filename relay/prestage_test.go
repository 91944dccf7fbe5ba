package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/testutil"
)

// logRecorder keeps the records logged through it.
type logRecorder struct{ testutil.Logs }

// count is how many records of level have msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	return l.Count(level, func(m string) bool { return strings.HasPrefix(m, msg) })
}

// runRelay is startRelay with a logger of the test's.
func runRelay(tb testing.TB, cfg Config, logger *slog.Logger, opts ...Option) *testRelay {
	tb.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(cfg, logger, reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRelay{Relay: r, reg: reg, done: make(chan error, 1), stop: cancel}
	go func() { tr.done <- r.Run(ctx) }()
	testutil.Eventually(tb, 5*time.Second, func() bool { return r.Addr() != "" }, "relay never listened")
	tr.url = "http://" + r.Addr()
	tb.Cleanup(func() {
		cancel()
		if err := <-tr.done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return tr
}

// quickStageRetry makes pre-stage retries start at d for one test.
func quickStageRetry(tb testing.TB, d time.Duration) {
	old := stageRetry
	stageRetry = d
	tb.Cleanup(func() { stageRetry = old }) // after the relay has stopped
}

// downUpstream is a file server that cannot be reached; it notes when it
// was tried.
type downUpstream struct {
	mu sync.Mutex
	at []time.Time
}

func (u *downUpstream) Open(context.Context, string) (io.ReadCloser, int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.at = append(u.at, time.Now())
	return nil, 0, errors.New("dial tcp 192.0.2.1:9000: connect: connection refused")
}

func (u *downUpstream) tries() []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Time(nil), u.at...)
}

// A pre-stage that keeps failing is tried again after longer and longer
// waits, and warned of once.
func TestPrestageBacksOff(t *testing.T) {
	quickStageRetry(t, 10*time.Millisecond)
	up := &downUpstream{}
	logs := &logRecorder{}
	tr := runRelay(t, testConfig(t), slog.New(logs), WithUpstream(up))
	h := hashOf([]byte("never arrives"))
	tr.applyPolicy(1, []string{h}, map[string]int64{h: 13})
	const tries = 6
	testutil.Eventually(t, 30*time.Second, func() bool { return len(up.tries()) >= tries }, "pre-stage not tried %d times", tries)
	at := up.tries()
	for i := 1; i < tries; i++ {
		// Timers never fire early: each wait is at least its due.
		if gap, want := at[i].Sub(at[i-1]), 10*time.Millisecond<<(i-1); gap < want {
			t.Errorf("try %d came %v after the one before, want at least %v: each wait doubles", i+1, gap, want)
		}
	}
	if n := logs.count(slog.LevelWarn, "pre-stage failed"); n != 1 {
		t.Errorf("%d warnings of the same failure, want 1", n)
	}
	if st := tr.Staging(); !strings.Contains(st.Error, "connection refused") {
		t.Errorf("staging error %q, want the failure", st.Error)
	}
}
