package cache

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
)

const mib = 1 << 20

// With no cap, unpinned objects can fill the disk: a new artifact then
// evicts the least recently used of them rather than failing with ENOSPC,
// and each byte crosses the WAN once.
func TestFullDiskEvictsUnpinnedObjects(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	a, b, c := blob("a", mib), blob("b", mib), blob("c", mib)
	d := blob("d", 3*mib/2)
	up := newRangeFake(a, b, c, d)
	h := newHarnessOpts(t, up, filepath.Join(disk, "cache"), Options{})
	for _, x := range [][]byte{a, b, c} {
		h.mustGet(t, hashOf(x))
	}
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if h.c.Has(hashOf(a)) || !h.c.Has(hashOf(b)) || !h.c.Has(hashOf(c)) || !h.c.Has(hashOf(d)) {
		t.Errorf("a %v b %v c %v d %v, want the least recently used (a) evicted and the rest kept",
			h.c.Has(hashOf(a)), h.c.Has(hashOf(b)), h.c.Has(hashOf(c)), h.c.Has(hashOf(d)))
	}
	if got, want := up.sent.Load(), int64(3*mib+3*mib/2); got != want {
		t.Errorf("read %d bytes from the upstream, want %d: each byte once", got, want)
	}
	if got := h.metric(t, "outpost_relay_cache_evictions_total"); got != 1 {
		t.Errorf("evictions = %v, want 1", got)
	}
}

// When pinned objects leave no room for an artifact, not a byte of it is
// read from the upstream, however often it is asked for, and the error
// says what it needs and what is free; unpinned objects that could not
// have made room are not evicted for nothing.
func TestFullDiskOfPinnedObjectsReadsNothing(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	dir := filepath.Join(disk, "cache")
	a, b, c := blob("a", mib), blob("b", mib), blob("c", mib)
	small := blob("small", 64<<10)
	d := blob("d", 2*mib)
	up := newRangeFake(a, b, c, small, d)
	h := newHarnessOpts(t, up, dir, Options{})
	h.c.SetPinned([]string{hashOf(a), hashOf(b), hashOf(c), hashOf(d)})
	for _, x := range [][]byte{a, b, c, small} {
		h.mustGet(t, hashOf(x))
	}
	before := up.sent.Load()
	for range 3 {
		_, _, err := h.c.Get(context.Background(), hashOf(d))
		if err == nil {
			t.Fatal("an artifact larger than the free space was fetched")
		}
		h.c.Wait()
		want := "cache disk full: need 2.0 MiB for " + hashOf(d) + ", "
		if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, " free in "+dir+" after evicting 0 B of unpinned objects") {
			t.Errorf("error %q, want it to say %q and what is free in %s", msg, want, dir)
		}
	}
	if got := up.sent.Load() - before; got != 0 {
		t.Errorf("read %d bytes of an artifact that cannot fit, want none", got)
	}
	if !h.c.Has(hashOf(small)) {
		t.Error("an unpinned object was evicted although that could not make room")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, tempDir, "*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}
