package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeDisk is a file system of a fixed capacity holding the cache alone:
// what is free is what the files under dir leave.
type fakeDisk struct {
	dir      string
	capacity int64
}

func (d *fakeDisk) free(string) (int64, error) {
	used := int64(0)
	err := filepath.WalkDir(d.dir, func(_ string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed while the walk ran
		}
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err == nil {
			used += fi.Size()
		}
		if errors.Is(err, fs.ErrNotExist) {
			// A temp file renamed into place (the cache's state files
			// are written so) is counted under its new name, if at all:
			// an error here would tell the cache that free space cannot
			// be known, and it would fetch unchecked.
			return nil
		}
		return err
	})
	return d.capacity - used, err
}

// newFakeDiskHarness is a cache on a fakeDisk of capacity; Open streams
// even the small artifacts of these tests.
func newFakeDiskHarness(t *testing.T, up Upstream, capacity int64) (*harness, *fakeDisk) {
	dir := t.TempDir()
	disk := &fakeDisk{dir: dir, capacity: capacity}
	return newHarnessOpts(t, up, dir, Options{FreeSpace: disk.free, StreamMin: 1}), disk
}

// Before it reads an artifact of known size, a fetch makes room for it
// by evicting unpinned objects, least recently used first, as few as do.
func TestRoomIsMadeBeforeAFetch(t *testing.T) {
	a, b, c, d := blob("a", 3000), blob("b", 3000), blob("c", 3000), blob("d", 2500)
	up := newRangeFake(a, b, c, d)
	h, _ := newFakeDiskHarness(t, up, 10_000)
	for _, x := range [][]byte{a, b, c} {
		h.mustGet(t, hashOf(x))
	}
	h.mustGet(t, hashOf(a)) // b is now the least recently used
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if !h.c.Has(hashOf(a)) || h.c.Has(hashOf(b)) || !h.c.Has(hashOf(c)) {
		t.Errorf("a %v b %v c %v: want b evicted alone", h.c.Has(hashOf(a)), h.c.Has(hashOf(b)), h.c.Has(hashOf(c)))
	}
	if got := h.metric(t, "outpost_relay_cache_evicted_bytes_total"); got != 3000 {
		t.Errorf("evicted %v bytes, want 3000", got)
	}
}

// An artifact that pinned objects leave no room for is not read at all:
// with the size the policy states, the upstream is not even asked; with
// only the size the upstream states, its body is not read.
func TestNoRoomReadsNothing(t *testing.T) {
	a, b, c := blob("a", 3000), blob("b", 3000), blob("c", 3000)
	small, d := blob("s", 500), blob("d", 2500)
	up := newRangeFake(a, b, c, small, d)
	h, _ := newFakeDiskHarness(t, up, 10_000)
	h.c.SetPinned([]string{hashOf(a), hashOf(b), hashOf(c), hashOf(d)})
	for _, x := range [][]byte{a, b, c, small} {
		h.mustGet(t, hashOf(x))
	}
	h.c.Wait() // the fetches' state files are gone
	opens := len(up.opens())
	h.c.SetExpectedSizes(map[string]int64{hashOf(d): 2500})
	_, _, err := h.c.Get(context.Background(), hashOf(d))
	var df *DiskFullError
	if !errors.As(err, &df) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get: %v, want a DiskFullError", err)
	}
	if df.Need != 2500 || df.Free != 500 || df.Evicted != 0 || df.Hash != hashOf(d) || df.Dir != h.dir {
		t.Errorf("error %+v: want need 2500, free 500, evicted 0", df)
	}
	want := "cache disk full: need 2.4 KiB for " + hashOf(d) + ", 500 B free in " + h.dir + " after evicting 0 B of unpinned objects"
	if err.Error() != want {
		t.Errorf("error %q\nwant      %q", err, want)
	}
	if got := len(up.opens()) - opens; got != 0 {
		t.Errorf("asked the upstream %d times for an artifact that cannot fit, want 0", got)
	}
	h.c.Wait()

	h.c.SetExpectedSizes(nil)
	if _, _, err := h.c.Get(context.Background(), hashOf(d)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get without a stated size: %v, want ErrDiskFull", err)
	}
	h.c.Wait()
	if got := up.sent.Load(); got != 9500 {
		t.Errorf("read %d bytes from the upstream, want 9500: none of the artifact that cannot fit", got)
	}
	if !h.c.Has(hashOf(small)) {
		t.Error("an unpinned object was evicted although that could not make room")
	}
	if got := h.metric(t, "outpost_relay_cache_disk_full_total"); got != 2 {
		t.Errorf("disk_full_total = %v, want 2", got)
	}
	if f := h.files(t); len(f) != 4 {
		t.Errorf("files %v: want the 4 objects alone", f)
	}
}

// What a fetch in progress has yet to write is not free for another.
func TestRoomCountsFetchesInProgress(t *testing.T) {
	e, f := blob("e", 6000), blob("f", 4500)
	up := newRangeFake(e, f)
	up.valve = newValve(1000)
	h, disk := newFakeDiskHarness(t, up, 10_000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obj, err := h.c.Open(ctx, hashOf(e))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	readN(t, obj, 999)
	if free, _ := disk.free(""); free < 4500 {
		t.Fatalf("the disk has %d bytes free, want more than f needs", free)
	}
	h.c.SetExpectedSizes(map[string]int64{hashOf(f): 4500})
	if _, _, err := h.c.Get(context.Background(), hashOf(f)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get f while e is fetched: %v, want ErrDiskFull", err)
	}
	up.valve.open(1 << 40)
	cancel()
}

// A partial fetch that nothing resumes now is evicted too, in its turn
// with unpinned objects, when that makes room.
func TestIdlePartialsMakeRoomLast(t *testing.T) {
	p, a, d := blob("p", 4000), blob("a", 2000), blob("d", 5000)
	up := newRangeFake(p, a, d)
	up.valve = newValve(3000)
	h, _ := newFakeDiskHarness(t, up, 10_000)
	h.c.SetPinned([]string{hashOf(a)})
	h.mustGet(t, hashOf(a))
	// p stops at 3000 bytes, kept to resume.
	ctx, cancel := context.WithCancel(context.Background())
	obj, err := h.c.Open(ctx, hashOf(p))
	if err != nil {
		t.Fatal(err)
	}
	readN(t, obj, 2999)
	cancel()
	obj.Close()
	h.c.Wait()
	if !h.c.hasPartial(hashOf(p)) {
		t.Fatal("the stopped fetch left no partial")
	}
	up.valve.open(1 << 40)
	if got := h.mustGet(t, hashOf(d)); !bytes.Equal(got, d) {
		t.Fatal("wrong bytes")
	}
	if h.c.hasPartial(hashOf(p)) {
		t.Error("the idle partial still holds the room")
	}
	if !h.c.Has(hashOf(a)) {
		t.Error("a pinned object was evicted")
	}
}

// A partial whose rest does not fit is not resumed, nor dropped: it waits
// for the room.
func TestPartialWaitsForRoom(t *testing.T) {
	a, b, p := blob("a", 4000), blob("b", 2500), blob("p", 5000)
	up := newRangeFake(a, b, p)
	h, _ := newFakeDiskHarness(t, up, 10_000)
	h.c.SetPinned([]string{hashOf(a), hashOf(b)}) // p once stopped: a pinned fetch goes on alone
	h.mustGet(t, hashOf(a))
	up.valve = newValve(3000)
	ctx, cancel := context.WithCancel(context.Background())
	obj, err := h.c.Open(ctx, hashOf(p))
	if err != nil {
		t.Fatal(err)
	}
	readN(t, obj, 2999)
	cancel()
	obj.Close()
	h.c.Wait()
	up.valve.open(1 << 40)
	h.c.SetPinned([]string{hashOf(a), hashOf(b), hashOf(p)})
	h.mustGet(t, hashOf(b))

	sent := up.sent.Load()
	_, _, err = h.c.Get(context.Background(), hashOf(p))
	var df *DiskFullError
	if !errors.As(err, &df) || df.Need != 2000 {
		t.Fatalf("Get: %v, want a DiskFullError needing the 2000 bytes left", err)
	}
	h.c.Wait()
	if got := up.sent.Load() - sent; got != 0 {
		t.Errorf("read %d bytes of an artifact that cannot fit", got)
	}
	if !h.c.hasPartial(hashOf(p)) {
		t.Fatal("the partial was dropped")
	}
	h.c.SetPinned([]string{hashOf(a), hashOf(p)}) // b may go
	if got := h.mustGet(t, hashOf(p)); !bytes.Equal(got, p) {
		t.Fatal("wrong bytes")
	}
	if got := up.sent.Load() - sent; got != 2000 {
		t.Errorf("read %d bytes to finish, want the 2000 left", got)
	}
}

func (c *Cache) hasPartial(hash string) bool {
	_, err := os.Stat(c.partialPath(hash))
	return err == nil
}

// logRecorder keeps the records logged through it.
type logRecorder struct{ testutil.Logs }

// count is how many records of level have msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	return l.Count(level, func(m string) bool { return m == msg })
}

// The same artifact failing again for want of room is no new warning.
func TestDiskFullWarnsOnce(t *testing.T) {
	a, d := blob("a", 8000), blob("d", 4000)
	up := newRangeFake(a, d)
	dir := t.TempDir()
	disk := &fakeDisk{dir: dir, capacity: 10_000}
	logs := &logRecorder{}
	c, err := New(dir, up, slog.New(logs), prometheus.NewRegistry(), Options{FreeSpace: disk.free})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wait)
	c.SetPinned([]string{hashOf(a)})
	if f, _, err := c.Get(context.Background(), hashOf(a)); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	for range 3 {
		if _, _, err := c.Get(context.Background(), hashOf(d)); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Get: %v, want ErrDiskFull", err)
		}
		c.Wait()
	}
	if w, d := logs.count(slog.LevelWarn, "fetch failed"), logs.count(slog.LevelDebug, "fetch failed again"); w != 1 || d != 2 {
		t.Errorf("%d warnings and %d debug records of the failure, want 1 and 2", w, d)
	}
}
