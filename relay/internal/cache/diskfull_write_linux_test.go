package cache

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
)

// unknownFree is a FreeSpace that cannot tell, so that fetches start
// unchecked and meet ENOSPC in their writes, as when something else fills
// the disk during a fetch.
func unknownFree(string) (int64, error) { return -1, nil }

// A write that finds the disk full evicts unpinned objects and is tried
// again, so that the fetch goes on without losing a byte.
func TestWriteOnFullDiskEvictsAndGoesOn(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	a, b, c := blob("a", mib), blob("b", mib), blob("c", mib)
	d := blob("d", 3*mib/2)
	up := newRangeFake(a, b, c, d)
	h := newHarnessOpts(t, up, filepath.Join(disk, "cache"), Options{FreeSpace: unknownFree})
	for _, x := range [][]byte{a, b, c} {
		h.mustGet(t, hashOf(x))
	}
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if h.c.Has(hashOf(a)) || !h.c.Has(hashOf(b)) || !h.c.Has(hashOf(c)) {
		t.Errorf("a %v b %v c %v, want the least recently used (a) evicted alone",
			h.c.Has(hashOf(a)), h.c.Has(hashOf(b)), h.c.Has(hashOf(c)))
	}
	if got, want := up.sent.Load(), int64(3*mib+3*mib/2); got != want {
		t.Errorf("read %d bytes from the upstream, want %d: each byte once", got, want)
	}
}

// A fetch that the disk cannot take even after evicting fails with what
// it needed, and keeps what it wrote: once there is room, the next fetch
// resumes from it rather than reading those bytes again.
func TestFullDiskKeepsThePartialToResume(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	dir := filepath.Join(disk, "cache")
	a, b, c := blob("a", mib), blob("b", mib), blob("c", mib)
	d := blob("d", 3*mib/2)
	up := newRangeFake(a, b, c, d)
	h := newHarnessOpts(t, up, dir, Options{FreeSpace: unknownFree})
	h.c.SetPinned([]string{hashOf(a), hashOf(b), hashOf(c), hashOf(d)})
	for _, x := range [][]byte{a, b, c} {
		h.mustGet(t, hashOf(x))
	}
	before := up.sent.Load()
	_, _, err := h.c.Get(context.Background(), hashOf(d))
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Get: %v, want ErrDiskFull from ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "cache disk full: need ") || !strings.Contains(err.Error(), " free in "+dir) {
		t.Errorf("error %q: want what was needed and what was free", err)
	}
	h.c.Wait()
	first := up.sent.Load() - before
	if !h.c.hasPartial(hashOf(d)) {
		t.Fatal("the partial was dropped")
	}

	h.c.SetPinned([]string{hashOf(a), hashOf(b), hashOf(d)}) // c may go now
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if h.c.Has(hashOf(c)) {
		t.Error("c not evicted")
	}
	total := up.sent.Load() - before
	t.Logf("first fetch read %d bytes before the disk was full; the second read %d", first, total-first)
	if first < mib/2 || total >= int64(len(d))+first/2 {
		t.Errorf("read %d bytes, then %d more: want the second fetch to resume from most of the first's", first, total-first)
	}
}
