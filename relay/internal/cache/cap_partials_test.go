package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/testutil"
)

// interrupt starts the fetch of hash, reads n bytes of it (the upstream's
// valve must hold it there) and leaves, so that the fetch stops and keeps
// what it has to resume (unless the cap takes it at once).
func (h *harness) interrupt(tb testing.TB, hash string, n int) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obj, err := h.c.Open(ctx, hash)
	if err != nil {
		tb.Fatal(err)
	}
	readN(tb, obj, n)
	cancel()
	obj.Close()
	// Other fetches may go on: wait for this one alone.
	testutil.Eventually(tb, 10*time.Second, func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return h.c.flights[hash] == nil
	}, "the fetch of %s did not stop with its reader", hash[:8])
}

// cacheBytes is what the cache holds on disk against its cap: its objects
// and its partial fetches (these tests' partials are written in one range,
// so their length is what they hold).
func (h *harness) cacheBytes(tb testing.TB) int64 {
	tb.Helper()
	var n int64
	for _, f := range h.files(tb) {
		if !strings.HasPrefix(f, objectsDir+"/") && !strings.HasSuffix(f, partialExt) {
			continue
		}
		fi, err := os.Stat(filepath.Join(h.dir, filepath.FromSlash(f)))
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// Partial fetches kept to resume count against the cap: however many
// fetches are interrupted, the cache holds no more than its cap, and the
// partial used longest ago goes first.
func TestPartialsCountAgainstTheCap(t *testing.T) {
	var arts [][]byte
	for i := range 4 {
		arts = append(arts, blob(fmt.Sprintf("partial %d ", i), 4000))
	}
	up := newRangeFake(arts...)
	up.valve = newValve(3000)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 7000, StreamMin: 1})
	for _, a := range arts {
		h.interrupt(t, hashOf(a), 3000)
	}
	if got := h.cacheBytes(t); got > 7000 {
		t.Errorf("the cache holds %d bytes of partial fetches, over its cap of 7000 (files %v)", got, h.files(t))
	}
	for i, a := range arts {
		if want := i >= 2; h.c.hasPartial(hashOf(a)) != want {
			t.Errorf("partial %d kept: %v, want %v (the two used last)", i, !want, want)
		}
	}
	// The gauge shows what the partials hold: the two kept, 3000 bytes each.
	if got := gaugeOf(t, h.c.metrics.partialBytes); got != 6000 {
		t.Errorf("outpost_relay_cache_partial_bytes = %v, want 6000", got)
	}
	// What is kept still resumes.
	up.valve.open(1 << 40)
	sent := up.sent.Load()
	if got := h.mustGet(t, hashOf(arts[3])); !bytes.Equal(got, arts[3]) {
		t.Fatal("wrong bytes")
	}
	if got := up.sent.Load() - sent; got != 1000 {
		t.Errorf("read %d bytes to finish a kept partial, want the 1000 left", got)
	}
	h.c.Wait()
	if got := h.cacheBytes(t); got > 7000 {
		t.Errorf("the cache holds %d bytes, over its cap of 7000", got)
	}
	if got := gaugeOf(t, h.c.metrics.partialBytes); got != 3000 {
		t.Errorf("outpost_relay_cache_partial_bytes = %v once one partial was finished, want 3000", got)
	}
}

// Eviction never takes a partial that a fetch is resuming from, even when
// the cache is over its cap and nothing else can go.
func TestPartialInUseIsNotEvicted(t *testing.T) {
	p1, p2 := blob("in use ", 4000), blob("idle ", 4000)
	up := newRangeFake(p1, p2)
	up.valve = newValve(3000)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
	h.interrupt(t, hashOf(p1), 3000)

	// p1 resumes from its partial and waits at the valve, its reader
	// with it, while p2 is fetched and interrupted beside it.
	obj, err := h.c.Open(context.Background(), hashOf(p1))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got := readN(t, obj, 3000); !bytes.Equal(got, p1[:3000]) {
		t.Fatal("p1: wrong kept bytes")
	}
	h.interrupt(t, hashOf(p2), 3000)
	if !h.c.hasPartial(hashOf(p1)) {
		t.Fatal("the partial a fetch resumes from was evicted")
	}
	if h.c.hasPartial(hashOf(p2)) {
		t.Errorf("the idle partial is kept though the cache is over its cap")
	}

	up.valve.open(1 << 40)
	rest, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(rest, p1[3000:]) {
		t.Fatalf("p1: read %d more bytes, %v", len(rest), err)
	}
	obj.Close()
	h.c.Wait()
	if got, want := up.sent.Load(), int64(3000+1000+3000); got != want {
		t.Errorf("the upstream sent %d bytes, want %d: p1 once, and p2's first 3000", got, want)
	}
	if !h.c.Has(hashOf(p1)) {
		t.Error("p1 not cached")
	}
	if got := h.cacheBytes(t); got > 5000 {
		t.Errorf("the cache holds %d bytes, over its cap of 5000", got)
	}
}

// A pinned artifact's partial is kept beyond the cap, as a pinned object
// is: pre-staging resumes it.
func TestPinnedPartialIsKeptBeyondTheCap(t *testing.T) {
	p, q := blob("pinned ", 4000), blob("other ", 4000)
	up := newRangeFake(p, q)
	up.valve = newValve(3000)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
	h.interrupt(t, hashOf(p), 3000)
	h.c.SetPinned([]string{hashOf(p)})
	h.interrupt(t, hashOf(q), 3000)
	if !h.c.hasPartial(hashOf(p)) {
		t.Error("the pinned artifact's partial was evicted")
	}
	if h.c.hasPartial(hashOf(q)) {
		t.Error("the unpinned partial is kept though the cache is over its cap")
	}
}

// Partials an earlier run left count too: a cache opened over its cap
// with them drops the oldest once the pins are known.
func TestPartialsOverTheCapGoOnceThePinsAreKnown(t *testing.T) {
	var arts [][]byte
	for i := range 3 {
		arts = append(arts, blob(fmt.Sprintf("left %d ", i), 4000))
	}
	dir := t.TempDir()
	up := newRangeFake(arts...)
	up.valve = newValve(3000)
	h := newHarnessOpts(t, up, dir, Options{StreamMin: 1}) // no cap
	for _, a := range arts {
		h.interrupt(t, hashOf(a), 3000)
	}
	// Used in the order 1, 0, 2 (the partial's time is its last write).
	base := time.Now().Add(-time.Hour)
	for i, order := range []int{1, 0, 2} {
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(h.c.partialPath(hashOf(arts[order])), at, at); err != nil {
			t.Fatal(err)
		}
	}

	h2 := newHarnessOpts(t, newRangeFake(arts...), dir, Options{MaxBytes: 6500, StreamMin: 1})
	for i, a := range arts {
		if !h2.c.hasPartial(hashOf(a)) {
			t.Fatalf("partial %d dropped before the pins were known", i)
		}
	}
	h2.c.SetPinned(nil)
	for i, a := range arts {
		if want := i != 1; h2.c.hasPartial(hashOf(a)) != want {
			t.Errorf("partial %d kept: %v, want %v (1 was used longest ago)", i, !want, want)
		}
	}
	if got := h2.cacheBytes(t); got > 6500 {
		t.Errorf("the cache holds %d bytes, over its cap of 6500", got)
	}
}

// A partial of an artifact too large for the cap to keep goes before
// anything else when room is needed: the artifact could never be kept.
func TestPartialOfAnArtifactTheCapCannotKeepGoesFirst(t *testing.T) {
	a, big, c := blob("a", 2000), blob("big ", 8000), blob("c", 1500)
	up := newRangeFake(a, big, c)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
	h.mustGet(t, hashOf(a))
	up.valve = newValve(3000)
	h.interrupt(t, hashOf(big), 3000)
	if !h.c.hasPartial(hashOf(big)) {
		t.Fatal("the partial was dropped while it fit under the cap")
	}
	up.valve.open(1 << 40)
	h.mustGet(t, hashOf(c))
	h.c.Wait()
	if h.c.hasPartial(hashOf(big)) {
		t.Error("the partial of an artifact the cap cannot keep is still there")
	}
	if !h.c.Has(hashOf(a)) || !h.c.Has(hashOf(c)) {
		t.Errorf("a %v c %v: want both kept", h.c.Has(hashOf(a)), h.c.Has(hashOf(c)))
	}
	if got := h.cacheBytes(t); got > 5000 {
		t.Errorf("the cache holds %d bytes, over its cap of 5000", got)
	}
}

// On a full disk too, objects and partials make room in one order, least
// recently used first: a partial left long ago goes before objects read
// since.
func TestFullDiskTakesPartialsAndObjectsInOneOrder(t *testing.T) {
	p, o1, o2, d := blob("p", 4000), blob("o1 ", 3000), blob("o2 ", 3000), blob("d", 2500)
	up := newRangeFake(p, o1, o2, d)
	h, _ := newFakeDiskHarness(t, up, 10_000)
	up.valve = newValve(3000)
	h.interrupt(t, hashOf(p), 3000)
	up.valve.open(1 << 40)
	h.mustGet(t, hashOf(o1))
	h.mustGet(t, hashOf(o2))
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if h.c.hasPartial(hashOf(p)) || !h.c.Has(hashOf(o1)) || !h.c.Has(hashOf(o2)) {
		t.Errorf("partial %v o1 %v o2 %v: want the partial, used longest ago, evicted alone",
			h.c.hasPartial(hashOf(p)), h.c.Has(hashOf(o1)), h.c.Has(hashOf(o2)))
	}
}

// gaugeOf is g's value.
func gaugeOf(tb testing.TB, g prometheus.Gauge) float64 {
	tb.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(g); err != nil {
		tb.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		tb.Fatalf("gather: %v, %d families", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetGauge().GetValue()
}
