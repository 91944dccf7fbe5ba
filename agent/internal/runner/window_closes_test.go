package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// slowContent is content that takes until after the clock moves: a long
// download over the WAN.
type slowContent struct {
	clk   *clock
	after time.Time
}

func (c slowContent) Get(context.Context, *wire.Artifact) (string, error) {
	c.clk.Set(c.after)
	return "/dev/null", nil
}

// An item whose window is open when its run reaches it, but whose content
// arrives after the window closed, is not applied: it waits for the next
// window, as one found closed does.
func TestItemNotAppliedWhenWindowClosesWhileContentIsFetched(t *testing.T) {
	root := t.TempDir()
	clk := &clock{now: time.Date(2026, 11, 25, 3, 50, 0, 0, time.UTC)} // inside 22:00-04:00 UTC
	r, _ := newRunner(t, Config{Root: root, Clock: clk.Now},
		slowContent{clk: clk, after: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}) // office hours
	item := &wire.Item{Id: "big-install", Kind: "test", State: wire.State_STATE_PRESENT, Window: "22:00-04:00",
		Artifact: &wire.Artifact{Sha256: strings.Repeat("ab", 32), Size: 1}}
	ir := one(t, r, item)
	if _, err := os.Stat(filepath.Join(root, "applied-big-install")); err == nil {
		t.Fatalf("applied at 09:00, outside its window 22:00-04:00: %v", ir)
	}
	expect(t, ir, wire.ItemReport_STATUS_PENDING, false, "waiting for window 22:00-04:00")
}

// A reboot an item's policy allows only inside its window does not happen
// when the run ends after the window closed (a later item's download took
// that long): the next run inside the window reboots for it.
func TestNoRebootWhenTheWindowClosedBeforeTheRunEnded(t *testing.T) {
	root := t.TempDir()
	clk := &clock{now: time.Date(2026, 11, 25, 3, 50, 0, 0, time.UTC)}
	var reboots []string
	var noted []string
	r, _ := newRunner(t, Config{Root: root, Clock: clk.Now,
		Reboot:       func(_ context.Context, _, reason string) error { reboots = append(reboots, reason); return nil },
		RebootNeeded: func(item string) { noted = append(noted, item) },
	}, slowContent{clk: clk, after: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)})
	first := &wire.Item{Id: "reboot-me", Kind: "test", State: wire.State_STATE_PRESENT, Window: "22:00-04:00", Reboot: RebootIfNeeded}
	second := &wire.Item{Id: "big-install", Kind: "test", State: wire.State_STATE_PRESENT,
		Artifact: &wire.Artifact{Sha256: strings.Repeat("ab", 32), Size: 1}}
	rep := r.Run(context.Background(), &wire.Policy{Revision: 1, Items: []*wire.Item{first, second}})
	if len(reboots) != 0 {
		t.Fatalf("rebooted at 09:00 for an item whose window is 22:00-04:00: %v", reboots)
	}
	if len(noted) != 1 || noted[0] != "reboot-me" {
		t.Fatalf("reboot need recorded %v, want [reboot-me] for the next run inside the window", noted)
	}
	if msg := rep.GetItems()[0].GetMessage(); strings.Contains(msg, "rebooting now") {
		t.Fatalf("the report says %q; no reboot was made", msg)
	}
}
