package member

import (
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// A coordinator that shuts down (or restarts, or a replica that goes)
// closes every member's connection in the same moment. Members that
// redial at once, with no jitter, arrive together: 20,000 handshakes in
// one millisecond, and while the coordinator is down their handshake
// retransmissions stay in step. They must spread their redials out.
func TestMembersThatLoseTheirConnectionTogetherDoNotRedialTogether(t *testing.T) {
	const members = 20
	f := startFakeCoordinator(t, false)
	for range members {
		c, err := NewClient(f.member(t), f.addr, nil, logging.Discard())
		if err != nil {
			t.Fatal(err)
		}
		c.stable = 0 // every connection has served
		f.run(t, c)
	}
	f.waitConns(t, members, time.Minute)

	closed := time.Now()
	f.closeAll(0)
	testutil.Eventually(t, time.Minute, func() bool { return f.acceptedSince(closed) >= members },
		"members did not all come back within a minute")
	// With the default first backoff they spread over 5 s, so about one
	// in 20 comes back within the first quarter second; a slow machine
	// only makes that fewer.
	early := f.acceptedSince(closed) - f.acceptedSince(closed.Add(250*time.Millisecond))
	t.Logf("%d of %d members redialled within 250 ms of losing their connections", early, members)
	if early >= members/2 {
		t.Fatalf("%d of %d members redialled within 250 ms of the coordinator closing their connections: they come back in step", early, members)
	}
}
