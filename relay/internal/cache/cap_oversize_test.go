package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// An unpinned artifact larger than the cap leaves beside the pinned ones
// is served as any other (streamed, checked, to late joiners too) but not
// kept, and evicts nothing to make room it could never use.
func TestArtifactTheCapCannotKeepIsServedNotKept(t *testing.T) {
	tests := []struct {
		name   string
		pinned [][]byte
		cached [][]byte
		big    []byte
	}{
		{name: "larger than the cap", cached: [][]byte{blob("a", 2000), blob("b", 2000)}, big: blob("big ", 8000)},
		{name: "larger than the pins leave", pinned: [][]byte{blob("p", 3000)}, cached: [][]byte{blob("a", 1500)},
			big: blob("big ", 2500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := append(append([][]byte{tt.big}, tt.pinned...), tt.cached...)
			up := newRangeFake(all...)
			h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
			var pins []string
			for _, p := range tt.pinned {
				pins = append(pins, hashOf(p))
			}
			h.c.SetPinned(pins)
			var kept int64
			for _, x := range append(tt.pinned, tt.cached...) {
				h.mustGet(t, hashOf(x))
				kept += int64(len(x))
			}
			h.c.Wait()
			up.valve = newValve(int64(len(tt.big) / 2))

			first, err := h.c.Open(context.Background(), hashOf(tt.big))
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			head := readN(t, first, len(tt.big)/2)
			late, err := h.c.Open(context.Background(), hashOf(tt.big))
			if err != nil {
				t.Fatal(err)
			}
			defer late.Close()
			for _, x := range tt.cached {
				if !h.c.Has(hashOf(x)) {
					t.Errorf("%s evicted for an artifact the cap cannot keep", hashOf(x)[:8])
				}
			}
			up.valve.open(1 << 40)
			rest, err := io.ReadAll(first)
			if err != nil || !bytes.Equal(append(head, rest...), tt.big) {
				t.Fatalf("first reader: %d bytes, %v", len(head)+len(rest), err)
			}
			all2, err := io.ReadAll(late)
			if err != nil || !bytes.Equal(all2, tt.big) {
				t.Fatalf("late reader: %d bytes, %v", len(all2), err)
			}
			first.Close()
			late.Close()
			if got := h.mustGet(t, hashOf(tt.big)); !bytes.Equal(got, tt.big) {
				t.Fatal("Get: wrong bytes")
			}
			h.c.Wait()

			if h.c.Has(hashOf(tt.big)) {
				t.Error("an artifact the cap cannot keep was kept")
			}
			for _, x := range append(tt.pinned, tt.cached...) {
				if !h.c.Has(hashOf(x)) {
					t.Errorf("%s evicted for an artifact the cap cannot keep", hashOf(x)[:8])
				}
			}
			if got := h.metric(t, "outpost_relay_cache_stored_bytes"); got != float64(kept) {
				t.Errorf("stored bytes = %v, want %d", got, kept)
			}
			for _, f := range h.files(t) {
				if strings.HasPrefix(f, tempDir+"/") {
					t.Errorf("temp file left: %s", f)
				}
			}
		})
	}
}

// Bytes of such an artifact that fail their hash are cut short as any
// other's, and cost the cache nothing.
func TestArtifactTheCapCannotKeepFailingItsHashIsCut(t *testing.T) {
	a := blob("a", 2000)
	good := blob("big ", 8000)
	evil := bytes.Clone(good)
	evil[len(evil)-1] ^= 1
	up := newRangeFake(a)
	up.objects[hashOf(good)] = evil
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
	h.mustGet(t, hashOf(a))
	obj, err := h.c.Open(context.Background(), hashOf(good))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if !errors.Is(err, ErrIntegrity) || len(got) >= len(good) {
		t.Fatalf("read %d bytes of %d, %v: want the stream cut with ErrIntegrity", len(got), len(good), err)
	}
	obj.Close()
	h.c.Wait()
	if h.c.Has(hashOf(good)) || !h.c.Has(hashOf(a)) {
		t.Errorf("big %v a %v: want a alone", h.c.Has(hashOf(good)), h.c.Has(hashOf(a)))
	}
}

// A pinned artifact is kept even beyond the cap, as documented: unpinned
// objects make what room they can.
func TestPinnedArtifactLargerThanTheCapIsKept(t *testing.T) {
	a, big := blob("a", 2000), blob("big ", 8000)
	up := newRangeFake(a, big)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000})
	h.mustGet(t, hashOf(a))
	h.c.SetPinned([]string{hashOf(big)})
	if got := h.mustGet(t, hashOf(big)); !bytes.Equal(got, big) {
		t.Fatal("wrong bytes")
	}
	h.c.Wait()
	if !h.c.Has(hashOf(big)) || h.c.Has(hashOf(a)) {
		t.Errorf("big %v a %v: want the pinned artifact kept, the unpinned one evicted", h.c.Has(hashOf(big)), h.c.Has(hashOf(a)))
	}
}

// A fetch whose result the cap cannot keep is not detached: left to run
// with no reader (a HEAD's pre-staging), it would read the whole artifact
// over the WAN only to drop it.
func TestArtifactTheCapCannotKeepIsNotDetached(t *testing.T) {
	small, big := blob("small ", 3000), blob("big ", 8000)
	up := newRangeFake(small, big)
	up.valve = newValve(1000)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 5000, StreamMin: 1})
	for _, tt := range []struct {
		name   string
		data   []byte
		pinned bool
		want   bool
	}{
		{"fits", small, false, true},
		{"larger than the cap", big, false, false},
		{"larger than the cap, pinned", big, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.pinned {
				h.c.SetPinned([]string{hashOf(tt.data)})
			}
			obj, err := h.c.Open(context.Background(), hashOf(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if got := h.c.Detach(hashOf(tt.data)); got != tt.want {
				t.Errorf("Detach = %v, want %v", got, tt.want)
			}
			obj.Close()
			h.c.Stop()
			h.c.SetPinned(nil)
		})
	}
}

// Nor does such an artifact evict what the cap keeps to find room on a
// disk that has too little beside the cache: it fails as any artifact the
// disk has no room for, before a byte of it is read (an agent then takes
// its next source), and the cache keeps what it had.
func TestArtifactTheCapCannotKeepEvictsNothingForDiskRoom(t *testing.T) {
	a, b, big := blob("a", 3000), blob("b", 3000), blob("big ", 7000)
	up := newRangeFake(a, b, big)
	dir := t.TempDir()
	disk := &fakeDisk{dir: dir, capacity: 10_000}
	h := newHarnessOpts(t, up, dir, Options{MaxBytes: 6000, FreeSpace: disk.free, StreamMin: 1})
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))
	h.c.Wait()
	sent := up.sent.Load()
	_, _, err := h.c.Get(context.Background(), hashOf(big))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Get: %v, want ErrDiskFull", err)
	}
	h.c.Wait()
	if !h.c.Has(hashOf(a)) || !h.c.Has(hashOf(b)) {
		t.Errorf("a %v b %v: want both kept", h.c.Has(hashOf(a)), h.c.Has(hashOf(b)))
	}
	if got := up.sent.Load() - sent; got != 0 {
		t.Errorf("read %d bytes of an artifact the disk has no room for", got)
	}
}
