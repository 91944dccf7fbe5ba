package relay

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A relay checks in every interval (2 minutes by default) whatever
// happens. With the coordinator out of reach for days (a WAN down over a
// long weekend) each check-in was a warning: 720 a day, each saying the
// same thing. The first failure is a warning, the outage is recalled once
// an hour, and the check-in that succeeds again says for how long it
// failed.
func TestCheckinOutageIsLoggedOnceAnHour(t *testing.T) {
	dir, _ := enrolledDataDir(t)
	id, err := member.LoadIdentity(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	// The real link, to a coordinator nothing answers for: its Call waits
	// for a connection until the check-in's context ends.
	link, err := member.NewClient(id, "127.0.0.1:1", nil, slog.New(&testutil.Logs{}))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir = dir
	logs := &testutil.Logs{}
	m := newMembership(cfg, slog.New(logs))
	m.id, m.call = id, link.Call
	m.removed.Store(&removedSet{})
	var mu sync.Mutex
	now := time.Now()
	m.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}

	// Three days away, a check-in every 2 minutes.
	checkin := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		m.checkin(ctx, nil)
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
	}
	for range 3 * 24 * 30 {
		checkin()
	}
	failed := func(msg string) bool { return strings.Contains(msg, "check-in") }
	if n := logs.Count(slog.LevelWarn, failed); n < 3*24-1 || n > 3*24+1 {
		t.Fatalf("%d warnings of failed check-ins over three days at 2-minute intervals; want one an hour", n)
	}

	// The coordinator answers again.
	m.call = func(context.Context, *wire.Request) (*wire.Response, error) {
		return &wire.Response{Body: &wire.Response_Checkin{Checkin: &wire.CheckinResponse{}}}, nil
	}
	checkin()
	back := logs.Count(slog.LevelInfo, func(msg string) bool { return strings.Contains(msg, "check-in") && strings.Contains(msg, "again") })
	if back != 1 {
		t.Fatal("no word that check-ins succeed again")
	}
}
