package member

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// A laptop away from any network for an afternoon has backed off to its
// longest wait. When it gets a network back — a new address, or it wakes
// from sleep in the office — it must dial then, not after what is left
// of its backoff (up to 45 s, and Go's timers stop while the host sleeps,
// so a wait begun before a sleep ends that much later after it).
func TestMemberRedialsWhenItsNetworkChangesOrItWakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(addrs *atomic.Value, wallOffset *atomic.Int64)
	}{
		{"the host's addresses change", func(addrs *atomic.Value, _ *atomic.Int64) { addrs.Store("192.0.2.7") }},
		{"the host wakes from sleep", func(_ *atomic.Value, wall *atomic.Int64) { wall.Add(int64(3 * time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeCoordinator(t, true) // every handshake fails at once
			c, err := NewClient(f.member(t), f.addr, nil, logging.Discard())
			if err != nil {
				t.Fatal(err)
			}
			// The longest waits, so that only a redial cut short passes.
			c.SetBackoff(time.Hour, time.Hour)
			var addrs atomic.Value
			addrs.Store("10.1.2.3")
			var wallOffset atomic.Int64
			c.watchEvery = 10 * time.Millisecond
			c.addrs = func() string { return addrs.Load().(string) }
			c.wall = func() time.Time { return time.Now().Add(time.Duration(wallOffset.Load())).Round(0) }
			f.run(t, c)
			testutil.Eventually(t, 30*time.Second, func() bool { return f.hellos.Load() >= 1 }, "the member did not dial")
			tc.change(&addrs, &wallOffset)
			testutil.Eventually(t, 30*time.Second, func() bool { return f.hellos.Load() >= 2 },
				"the member waits out its backoff after %s", tc.name)
		})
	}
}
