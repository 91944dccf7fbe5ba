package member

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
)

// A laptop on a network that blocks the coordinator (a hotel, a guest
// Wi-Fi) retries every half minute for days. Each failed dial must not be
// a Warn: that is about 2,900 lines a day per laptop, in the admin's
// logs and on the laptop's disk. The first failure is told, then rarely;
// and the retries hold on to nothing.
func TestCoordinatorUnreachableForLongIsToldOnceNotAtEachRetry(t *testing.T) {
	f := startFakeCoordinator(t, true) // every handshake fails at once
	logs := &testutil.Logs{}
	c, err := NewClient(f.member(t), f.addr, nil, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	c.SetBackoff(time.Millisecond, 2*time.Millisecond)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	const attempts = 60
	testutil.Eventually(t, time.Minute, func() bool { return f.hellos.Load() >= attempts }, "the member did not retry %d times", attempts)
	if c.Connected() {
		t.Fatal("connected to a coordinator of another CA")
	}
	// Goroutines do not pile up as the dials fail.
	testutil.Eventually(t, 30*time.Second, func() bool { return runtime.NumGoroutine() <= before+10 },
		"goroutines grow with failed dials: %d before, %d now", before, runtime.NumGoroutine())
	cancel()
	<-done

	warned := logs.Count(slog.LevelWarn, func(m string) bool { return strings.Contains(m, "unreachable") })
	t.Logf("%d failed dials, %d Warn records", f.hellos.Load(), warned)
	if warned > 2 {
		t.Fatalf("%d failed dials logged %d Warn records: a coordinator away for days fills the logs", f.hellos.Load(), warned)
	}
	if warned == 0 {
		t.Fatal("the coordinator being unreachable was not told at all")
	}
}
