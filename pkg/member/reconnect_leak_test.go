package member

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A laptop reconnects many times a day for years: each cycle — a call, a
// push from the coordinator on the new connection, the connection lost —
// must leave nothing behind, and pushes must reach the member on
// whichever connection is current.
func TestReconnectCyclesLeaveNoGoroutinesAndPushesFollow(t *testing.T) {
	f := startFakeCoordinator(t, false)
	var pushes atomic.Int64
	c, err := NewClient(f.member(t), f.addr, func(context.Context, *wire.Request) *wire.Response {
		pushes.Add(1)
		return nil
	}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	c.SetBackoff(time.Millisecond, 5*time.Millisecond)
	c.stable = time.Hour // each connection ends at once: backoff, not the spread
	f.run(t, c)
	conn := f.waitConns(t, 1, 30*time.Second)
	testutil.Eventually(t, 30*time.Second, c.Connected, "not connected")
	before := runtime.NumGoroutine()

	const cycles = 40
	for i := 2; i <= cycles+1; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := c.Call(ctx, &wire.Request{Body: &wire.Request_Policy{Policy: &wire.PolicyRequest{}}}); err != nil {
			// The connection may have gone between the look and the call.
			t.Logf("cycle %d: call: %v", i, err)
		}
		if _, err := push(ctx, conn, &wire.Request{Body: &wire.Request_RevisionNotice{RevisionNotice: &wire.RevisionNotice{}}}); err != nil {
			t.Fatalf("cycle %d: push on the current connection: %v", i, err)
		}
		cancel()
		conn.CloseWithError(0, "replaced")
		conn = f.waitConns(t, i, 30*time.Second)
	}
	if got := pushes.Load(); got != cycles {
		t.Fatalf("%d pushes reached the member, want %d", got, cycles)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return runtime.NumGoroutine() <= before+5 },
		"goroutines grow with reconnects: %d before %d cycles, %d after", before, cycles, runtime.NumGoroutine())
}
