package member

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A laptop that slept overnight holds a connection the coordinator
// dropped hours ago; QUIC's idle timeout counts only the time the host is
// awake, so nothing on the member's side ends it. Unless a stateless
// reset gets through, the member would keep sending into it for another
// minute of awake time, and a check-in made meanwhile would hang. Once
// it woke from a sleep longer than the idle timeout it must drop it,
// fail what was in flight on it, and redial at once.
//
// The fake coordinator here keeps the connection (its peer's sleep is
// faked by the member's wall clock jumping), so only the member's own
// noticing makes it redial.
func TestMemberRedialsAtOnceAfterTheHostSleptThroughItsConnection(t *testing.T) {
	f := startFakeCoordinator(t, false)
	held := make(chan struct{})
	f.answer = func(ctx context.Context, req *wire.Request) *wire.Response {
		close(held)
		<-ctx.Done() // never answered while the connection lives
		return nil
	}
	c, err := NewClient(f.member(t), f.addr, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	var wallOffset atomic.Int64
	c.watchEvery = 10 * time.Millisecond
	c.wall = func() time.Time { return time.Now().Add(time.Duration(wallOffset.Load())).Round(0) }
	f.run(t, c)
	f.waitConns(t, 1, 30*time.Second)
	testutil.Eventually(t, 30*time.Second, c.Connected, "not connected")

	// A check-in in flight as the lid closes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	callErr := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{}}})
		callErr <- err
	}()
	<-held

	wallOffset.Add(int64(8 * time.Hour)) // the night
	select {
	case err := <-callErr:
		if err == nil {
			t.Fatal("a call on a connection the host slept through succeeded")
		}
		t.Logf("the call in flight failed with: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("a call in flight on a connection the host slept through still hangs a minute after it woke")
	}
	f.waitConns(t, 2, time.Minute)
}
