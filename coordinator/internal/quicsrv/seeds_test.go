package quicsrv

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// Seeds: never the asker, a member without a gossip address or one not
// heard from lately; the two heard from last first, then three others
// that change from answer to answer, so that over a few check-ins every
// live member is named.
func TestGossipSeeds(t *testing.T) {
	now := time.Now()
	stale := now.Add(-time.Hour)
	var ms []store.GossipPeer
	for i := range 12 {
		ms = append(ms, store.GossipPeer{ID: fmt.Sprint("m", i), GossipAddr: fmt.Sprintf("127.0.0.%d:7946", i),
			LastSeen: now.Add(-time.Duration(i) * time.Minute)})
	}
	ms = append(ms,
		store.GossipPeer{ID: "quiet", GossipAddr: "127.0.0.99:7946", LastSeen: now.Add(-2 * time.Hour)},
		store.GossipPeer{ID: "roamer", LastSeen: now})
	named := map[string]bool{}
	for range 200 {
		seeds := gossipSeeds(slices.Clone(ms), "m0", stale)
		if len(seeds) != 5 {
			t.Fatalf("%d seeds, want 5: %v", len(seeds), seeds)
		}
		if seeds[0] != "127.0.0.1:7946" || seeds[1] != "127.0.0.2:7946" {
			t.Fatalf("seeds %v do not start with the two heard from last", seeds)
		}
		for i, s := range seeds {
			if slices.Contains(seeds[:i], s) {
				t.Fatalf("seed %s twice: %v", s, seeds)
			}
			if s == "127.0.0.0:7946" || s == "127.0.0.99:7946" || s == "" {
				t.Fatalf("seed %q should not be named: %v", s, seeds)
			}
			named[s] = true
		}
	}
	if len(named) != 11 {
		t.Errorf("over 200 answers %d members were named, want all 11 live ones", len(named))
	}
	if got := gossipSeeds(ms[:3], "m0", stale); len(got) != 2 {
		t.Errorf("an office of three: seeds %v, want the other two", got)
	}
	if got := gossipSeeds(nil, "m0", stale); len(got) != 0 {
		t.Errorf("an empty office: seeds %v", got)
	}
}
