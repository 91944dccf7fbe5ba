package cache

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
)

// A write of an artifact the cap cannot keep that finds the disk full
// evicts nothing the cap keeps: the fetch fails, the cache is as it was.
func TestFullDiskWriteOfAnArtifactTheCapCannotKeepEvictsNothing(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	a, b := blob("a", mib), blob("b", mib)
	big := blob("big ", 7*mib/2)
	up := newRangeFake(a, b, big)
	h := newHarnessOpts(t, up, filepath.Join(disk, "cache"), Options{MaxBytes: 3 * mib, FreeSpace: unknownFree})
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))
	if _, _, err := h.c.Get(context.Background(), hashOf(big)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get: %v, want ErrDiskFull", err)
	}
	h.c.Wait()
	if !h.c.Has(hashOf(a)) || !h.c.Has(hashOf(b)) {
		t.Errorf("a %v b %v: want both kept", h.c.Has(hashOf(a)), h.c.Has(hashOf(b)))
	}
}

// An upstream that states no size cannot be checked before it is read:
// its artifact makes room as any other while it may still fit the cap,
// and none once it has outgrown what the cap can keep.
func TestFullDiskWriteOfAnUnsizedArtifactStopsEvictingPastTheCap(t *testing.T) {
	disk := testutil.TinyDisk(t, "8m")
	a := blob("a", mib)
	endless := blob("endless ", 10*mib)
	up := newFake(a, endless)
	up.sizes[hashOf(endless)] = -1
	h := newHarnessOpts(t, up, filepath.Join(disk, "cache"), Options{MaxBytes: 2 * mib, FreeSpace: unknownFree})
	h.mustGet(t, hashOf(a))
	if _, _, err := h.c.Get(context.Background(), hashOf(endless)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get: %v, want ErrDiskFull", err)
	}
	h.c.Wait()
	if !h.c.Has(hashOf(a)) {
		t.Error("an object the cap keeps was evicted for an artifact already larger than the cap")
	}
}
