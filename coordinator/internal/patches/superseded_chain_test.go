package patches

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// Superseded runs at every signing of every office's policy, over the
// whole catalog (withPatches in the API). It walked the supersedes chain
// anew from every patch, so a catalog whose patches supersede one another
// in a chain — cumulative updates, each replacing the one before — cost
// the square of its length: 16,000 patches took 27 s a call, an import
// (which signs every office again) an office times that, and a feed within
// the limits could hold a longer chain. It now visits each patch a bounded
// number of times.
func TestSupersededIsLinearInALongChain(t *testing.T) {
	const n = 60_000 // the quadratic walk: about 2·10⁹ steps, many minutes
	catalog := map[string]store.Patch{}
	ids := make([]string, 0, n)
	for i := range n {
		p := store.Patch{ID: fmt.Sprintf("CU-%d", i)}
		if i > 0 {
			p.Supersedes = []string{fmt.Sprintf("CU-%d", i-1)}
		}
		catalog[p.ID] = p
		ids = append(ids, p.ID)
	}
	done := make(chan map[string]bool, 1)
	go func() { done <- Superseded(ids, catalog) }()
	// Not a measure of speed: the linear walk takes well under a second
	// even under the race detector on a busy machine; the quadratic one
	// takes orders of magnitude longer than this bound.
	select {
	case got := <-done:
		if len(got) != n-1 || got[ids[n-1]] || !got[ids[0]] {
			t.Fatalf("Superseded marked %d patches (the newest: %v, the oldest: %v); want every one but the newest", len(got), got[ids[n-1]], got[ids[0]])
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("Superseded of a chain of %d patches did not return within 2 minutes", n)
	}
}

// supersededByWalking is Superseded as it was: from every id, a walk of
// everything it supersedes. It is the reference the faster one must match.
func supersededByWalking(ids []string, catalog map[string]store.Patch) map[string]bool {
	in := map[string]bool{}
	for _, id := range ids {
		in[id] = true
	}
	out := map[string]bool{}
	for _, id := range ids {
		seen := map[string]bool{}
		stack := append([]string{}, catalog[id].Supersedes...)
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[s] {
				continue
			}
			seen[s] = true
			if in[s] && s != id {
				out[s] = true
			}
			stack = append(stack, catalog[s].Supersedes...)
		}
	}
	return out
}

// On random catalogs — cycles, self-references, ids outside the catalog
// and repeated ids included, which imports refuse but the function must
// not depend on — Superseded says what walking from every id says.
func TestSupersededMatchesWalkingFromEveryPatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		n := 1 + r.IntN(12)
		catalog := map[string]store.Patch{}
		for i := range n {
			p := store.Patch{ID: fmt.Sprint(i)}
			for range r.IntN(4) {
				p.Supersedes = append(p.Supersedes, fmt.Sprint(r.IntN(n+3))) // some beyond the catalog
			}
			catalog[p.ID] = p
		}
		var ids []string
		for range r.IntN(n + 3) {
			ids = append(ids, fmt.Sprint(r.IntN(n+2)))
		}
		want, got := supersededByWalking(ids, catalog), Superseded(ids, catalog)
		if !maps.Equal(got, want) {
			t.Fatalf("round %d: Superseded(%v) = %v, want %v; catalog %v", round, ids, got, want, catalog)
		}
	}
}
