package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// fakeUpstream serves artifacts from memory. Configure it before the first
// Get; only the counters change afterwards.
type fakeUpstream struct {
	objects  map[string][]byte
	sizes    map[string]int64 // announced size, when it should differ
	openErr  error
	readErr  error         // returned after half the bytes
	gate     chan struct{} // when set, Open waits for it to close
	opens    atomic.Int64
	canceled atomic.Int64 // Opens or reads that saw their ctx end
}

func newFake(blobs ...[]byte) *fakeUpstream {
	u := &fakeUpstream{objects: map[string][]byte{}, sizes: map[string]int64{}}
	for _, b := range blobs {
		u.objects[hashOf(b)] = b
	}
	return u
}

func (u *fakeUpstream) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	u.opens.Add(1)
	if u.gate != nil {
		select {
		case <-u.gate:
		case <-ctx.Done():
			u.canceled.Add(1)
			return nil, 0, ctx.Err()
		}
	}
	if u.openErr != nil {
		return nil, 0, u.openErr
	}
	data, ok := u.objects[hash]
	if !ok {
		return nil, 0, fmt.Errorf("fake upstream: sha256/%s: %w", hash, ErrNotFound)
	}
	size := int64(len(data))
	if s, ok := u.sizes[hash]; ok {
		size = s
	}
	return io.NopCloser(&fakeReader{u: u, ctx: ctx, data: data}), size, nil
}

type fakeReader struct {
	u    *fakeUpstream
	ctx  context.Context
	data []byte
	off  int
}

func (r *fakeReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		r.u.canceled.Add(1)
		return 0, err
	}
	if r.u.readErr != nil && r.off >= len(r.data)/2 {
		return 0, r.u.readErr
	}
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	// Small reads, so that a failure can land mid-stream.
	n := copy(p[:min(len(p), 1024)], r.data[r.off:])
	r.off += n
	return n, nil
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func blob(seed string, n int) []byte {
	return bytes.Repeat([]byte(seed), n)[:n]
}

type harness struct {
	c   *Cache
	dir string
	reg *prometheus.Registry
}

func newHarness(tb testing.TB, up Upstream, dir string) *harness {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	reg := prometheus.NewRegistry()
	c, err := New(dir, up, logging.Discard(), reg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Wait)
	return &harness{c: c, dir: dir, reg: reg}
}

// metric returns the value of a counter or gauge, 0 if absent.
func (h *harness) metric(tb testing.TB, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// files lists every file under the cache directory, relative to it.
func (h *harness) files(tb testing.TB) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(h.dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func (h *harness) mustGet(tb testing.TB, hash string) []byte {
	tb.Helper()
	f, size, err := h.c.Get(context.Background(), hash)
	if err != nil {
		tb.Fatalf("Get %s: %v", hash, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		tb.Fatal(err)
	}
	if int64(len(data)) != size {
		tb.Fatalf("Get returned size %d for %d bytes", size, len(data))
	}
	return data
}

func TestGetMissThenHit(t *testing.T) {
	data := blob("artifact ", 300_000)
	hash := hashOf(data)
	up := newFake(data)
	h := newHarness(t, up, "")

	for i, want := range []struct{ hits, misses float64 }{{0, 1}, {1, 1}, {2, 1}} {
		if got := h.mustGet(t, hash); !bytes.Equal(got, data) {
			t.Fatalf("get %d: wrong bytes", i)
		}
		if got := h.metric(t, "outpost_relay_cache_hits_total"); got != want.hits {
			t.Errorf("get %d: hits = %v, want %v", i, got, want.hits)
		}
		if got := h.metric(t, "outpost_relay_cache_misses_total"); got != want.misses {
			t.Errorf("get %d: misses = %v, want %v", i, got, want.misses)
		}
	}
	if n := up.opens.Load(); n != 1 {
		t.Errorf("upstream opened %d times, want 1", n)
	}
	if got := h.metric(t, "outpost_relay_cache_upstream_bytes_total"); got != float64(len(data)) {
		t.Errorf("upstream bytes = %v, want %d", got, len(data))
	}
	if got := h.metric(t, "outpost_relay_cache_objects"); got != 1 {
		t.Errorf("objects = %v, want 1", got)
	}
	want := []string{"sha256/" + hash[:2] + "/" + hash}
	if got := h.files(t); !equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
}

func TestGetSizeNotAnnounced(t *testing.T) {
	data := blob("unsized ", 4321)
	up := newFake(data)
	up.sizes[hashOf(data)] = -1
	h := newHarness(t, up, "")
	if got := h.mustGet(t, hashOf(data)); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
}

func TestGetEmptyArtifact(t *testing.T) {
	up := newFake([]byte{})
	h := newHarness(t, up, "")
	if got := h.mustGet(t, hashOf(nil)); len(got) != 0 {
		t.Fatalf("got %d bytes, want 0", len(got))
	}
}

func TestGetRejects(t *testing.T) {
	good := blob("good", 10_000)
	goodHash := hashOf(good)
	bad := blob("evil", 10_000)
	boom := errors.New("connection reset by peer")

	tests := []struct {
		name       string
		setup      func(u *fakeUpstream)
		wantIs     []error
		wantMsg    string
		wantMetric string
		label      []string
	}{
		{
			name:       "sha256 mismatch",
			setup:      func(u *fakeUpstream) { u.objects[goodHash] = bad },
			wantIs:     []error{ErrIntegrity, ErrUpstream},
			wantMsg:    "hash to sha256 " + hashOf(bad),
			wantMetric: "outpost_relay_cache_verify_failures_total", label: []string{"reason", "sha256"},
		},
		{
			name: "sha256 mismatch, size not announced",
			setup: func(u *fakeUpstream) {
				u.objects[goodHash] = bad
				u.sizes[goodHash] = -1
			},
			wantIs:     []error{ErrIntegrity, ErrUpstream},
			wantMsg:    "hash to sha256 " + hashOf(bad),
			wantMetric: "outpost_relay_cache_verify_failures_total", label: []string{"reason", "sha256"},
		},
		{
			name:       "fewer bytes than announced",
			setup:      func(u *fakeUpstream) { u.sizes[goodHash] = int64(len(good)) + 1 },
			wantIs:     []error{ErrIntegrity, ErrUpstream},
			wantMsg:    "announced 10001 bytes, sent 10000",
			wantMetric: "outpost_relay_cache_verify_failures_total", label: []string{"reason", "size"},
		},
		{
			name:       "more bytes than announced",
			setup:      func(u *fakeUpstream) { u.sizes[goodHash] = int64(len(good)) - 1 },
			wantIs:     []error{ErrIntegrity, ErrUpstream},
			wantMsg:    "announced 9999 bytes, sent 10000",
			wantMetric: "outpost_relay_cache_verify_failures_total", label: []string{"reason", "size"},
		},
		{
			name:       "not found",
			setup:      func(u *fakeUpstream) { delete(u.objects, goodHash) },
			wantIs:     []error{ErrNotFound},
			wantMetric: "outpost_relay_cache_upstream_not_found_total",
		},
		{
			name:       "open fails",
			setup:      func(u *fakeUpstream) { u.openErr = boom },
			wantIs:     []error{ErrUpstream, boom},
			wantMetric: "outpost_relay_cache_upstream_errors_total",
		},
		{
			name:       "read fails mid-stream",
			setup:      func(u *fakeUpstream) { u.readErr = boom },
			wantIs:     []error{ErrUpstream, boom},
			wantMsg:    "read after 5120 bytes",
			wantMetric: "outpost_relay_cache_upstream_errors_total",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newFake(good)
			tt.setup(up)
			h := newHarness(t, up, "")
			f, _, err := h.c.Get(context.Background(), goodHash)
			if err == nil {
				f.Close()
				t.Fatal("Get succeeded")
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not wrap %q", err, target)
				}
			}
			if tt.wantIs[0] != ErrNotFound && errors.Is(err, ErrNotFound) {
				t.Errorf("error %q claims not-found", err)
			}
			if !strings.Contains(err.Error(), goodHash) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q should name %s and say %q", err, goodHash, tt.wantMsg)
			}
			if got := h.metric(t, tt.wantMetric, tt.label...); got != 1 {
				t.Errorf("%s%v = %v, want 1", tt.wantMetric, tt.label, got)
			}
			h.c.Wait()
			if got := h.files(t); len(got) != 0 {
				t.Errorf("rejected bytes left on disk: %v", got)
			}

			// A failure is not remembered: once the file server is right,
			// the artifact comes through.
			fixed := newFake(good)
			h.c.up = fixed
			if got := h.mustGet(t, goodHash); !bytes.Equal(got, good) {
				t.Fatal("wrong bytes after the upstream was fixed")
			}
			if got := h.metric(t, "outpost_relay_cache_objects"); got != 1 {
				t.Errorf("objects = %v, want 1", got)
			}
		})
	}
}

func TestGetMalformedHash(t *testing.T) {
	valid := hashOf([]byte("x"))
	tests := []string{
		"",
		"abc",
		strings.ToUpper(valid),
		valid[:63],
		valid + "0",
		valid[:62] + "g0",
		"../../../../../../../../../etc/passwd" + strings.Repeat("0", 27),
		valid[:60] + "/../",
		valid[:63] + "\x00",
		strings.Repeat("é", 32),
		" " + valid[1:],
	}
	up := newFake()
	h := newHarness(t, up, "")
	before := h.files(t)
	for _, hash := range tests {
		t.Run(fmt.Sprintf("%q", hash), func(t *testing.T) {
			_, _, err := h.c.Get(context.Background(), hash)
			if !errors.Is(err, ErrInvalidHash) {
				t.Fatalf("Get(%q) = %v, want ErrInvalidHash", hash, err)
			}
		})
	}
	if n := up.opens.Load(); n != 0 {
		t.Errorf("upstream opened %d times for malformed names", n)
	}
	if after := h.files(t); !equal(before, after) {
		t.Errorf("file system changed: %v → %v", before, after)
	}
	if got := h.metric(t, "outpost_relay_cache_misses_total"); got != 0 {
		t.Errorf("malformed names counted as %v misses", got)
	}
}

func TestConcurrentGetsShareOneFetch(t *testing.T) {
	const callers = 50
	data := blob("shared ", 1<<20)
	hash := hashOf(data)
	up := newFake(data)
	up.gate = make(chan struct{})
	h := newHarness(t, up, "")

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			f, size, err := h.c.Get(context.Background(), hash)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil || int64(len(got)) != size || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("wrong bytes (%d, err %v)", len(got), err)
			}
		})
	}
	// Release the upstream only once every caller waits on the fetch, so
	// that none of them can be served by a finished one.
	testutil.Eventually(t, 5*time.Second, func() bool { return h.waiters(hash) == callers },
		"%d callers waiting, want %d", h.waiters(hash), callers)
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := up.opens.Load(); n != 1 {
		t.Errorf("upstream opened %d times, want 1", n)
	}
	if got := h.metric(t, "outpost_relay_cache_upstream_fetches_total"); got != 1 {
		t.Errorf("fetches = %v, want 1", got)
	}
	if got := h.metric(t, "outpost_relay_cache_upstream_bytes_total"); got != float64(len(data)) {
		t.Errorf("upstream bytes = %v, want %d", got, len(data))
	}
}

// waiters reports how many Gets wait on the fetch of hash.
func (h *harness) waiters(hash string) int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if fl, ok := h.c.flights[hash]; ok {
		return fl.waiters
	}
	return 0
}

func TestWaiterLeavingDoesNotCancelOthers(t *testing.T) {
	data := blob("patient ", 100_000)
	hash := hashOf(data)
	up := newFake(data)
	up.gate = make(chan struct{})
	h := newHarness(t, up, "")

	impatient, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, _, err := h.c.Get(impatient, hash)
		firstErr <- err
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return h.waiters(hash) == 1 }, "first caller never waited")

	type result struct {
		data []byte
		err  error
	}
	second := make(chan result, 1)
	go func() {
		f, _, err := h.c.Get(context.Background(), hash)
		if err != nil {
			second <- result{err: err}
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		second <- result{b, err}
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return h.waiters(hash) == 2 }, "second caller never waited")

	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(up.gate)
	r := <-second
	if r.err != nil || !bytes.Equal(r.data, data) {
		t.Fatalf("remaining caller: err %v, %d bytes", r.err, len(r.data))
	}
	if n := up.canceled.Load(); n != 0 {
		t.Errorf("the shared fetch saw its context end %d times", n)
	}
	if n := up.opens.Load(); n != 1 {
		t.Errorf("upstream opened %d times, want 1", n)
	}
}

func TestLastWaiterLeavingCancelsFetch(t *testing.T) {
	data := blob("abandoned ", 100_000)
	hash := hashOf(data)
	up := newFake(data)
	up.gate = make(chan struct{})
	h := newHarness(t, up, "")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := h.c.Get(ctx, hash); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want deadline exceeded", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return up.canceled.Load() == 1 },
		"the abandoned fetch was not cancelled")
	h.c.Wait()
	if got := h.files(t); len(got) != 0 {
		t.Errorf("files after an abandoned fetch: %v", got)
	}

	// The next caller starts afresh.
	close(up.gate)
	if got := h.mustGet(t, hash); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	if n := up.opens.Load(); n != 2 {
		t.Errorf("upstream opened %d times, want 2", n)
	}
}

func TestRestartKeepsObjectsAndDropsTemps(t *testing.T) {
	dir := t.TempDir()
	a, b := blob("first ", 5000), blob("second ", 7000)
	up := newFake(a, b)
	h := newHarness(t, up, dir)
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))

	// What a crash mid-fetch, or a stray hand, leaves behind.
	misplaced := hashOf([]byte("misplaced"))
	junk := map[string]string{
		"tmp/" + hashOf(a)[:16] + "-123":                          "half a download",
		"tmp/nested/deeper":                                       "x",
		"sha256/" + hashOf(a)[:2] + "/" + hashOf(a)[:16] + "-123": "partial",
		"sha256/" + hashOf(a)[:2] + "/README":                     "notes",
		"sha256/zz/whatever":                                      "x",
		"sha256/" + misplaced[:2] + "x/" + misplaced:              "x",
		"sha256/" + flip(misplaced[:2]) + "/" + misplaced:         "x",
	}
	for name, content := range junk {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	up2 := newFake() // knows nothing: the restarted cache must not ask
	h2 := newHarness(t, up2, dir)
	want := []string{
		"sha256/" + hashOf(a)[:2] + "/" + hashOf(a),
		"sha256/" + hashOf(b)[:2] + "/" + hashOf(b),
	}
	sort.Strings(want)
	if got := h2.files(t); !equal(got, want) {
		t.Errorf("after restart: files %v, want %v", got, want)
	}
	if got := h2.mustGet(t, hashOf(a)); !bytes.Equal(got, a) {
		t.Error("wrong bytes for a after restart")
	}
	if got := h2.mustGet(t, hashOf(b)); !bytes.Equal(got, b) {
		t.Error("wrong bytes for b after restart")
	}
	if n := up2.opens.Load(); n != 0 {
		t.Errorf("restarted cache opened the upstream %d times", n)
	}
	if got := h2.metric(t, "outpost_relay_cache_objects"); got != 2 {
		t.Errorf("objects = %v, want 2", got)
	}
	if got := h2.metric(t, "outpost_relay_cache_stored_bytes"); got != float64(len(a)+len(b)) {
		t.Errorf("stored bytes = %v, want %d", got, len(a)+len(b))
	}
}

// Pinned objects are kept beyond the cap, across a restart too: the cache
// opens before the relay has applied its saved policy's pins, so opening
// must not evict down to the cap (they would cross the WAN again).
func TestRestartKeepsPinnedObjectsBeyondTheCap(t *testing.T) {
	a, b, c := blob("a", 1000), blob("b", 1000), blob("c", 1000)
	pins := []string{hashOf(a), hashOf(b), hashOf(c)}
	dir := t.TempDir()
	h := newHarnessOpts(t, newRangeFake(a, b, c), dir, Options{MaxBytes: 1500})
	h.c.SetPinned(pins)
	for _, p := range pins {
		h.mustGet(t, p)
	}
	for _, p := range pins {
		if !h.c.Has(p) {
			t.Fatalf("pinned %s evicted before the restart", p[:8])
		}
	}
	h.c.Wait()

	// Restart, as relay.New does: open the cache, then apply the saved
	// policy's pins.
	h2 := newHarnessOpts(t, newRangeFake(), dir, Options{MaxBytes: 1500})
	h2.c.SetPinned(pins)
	var lost []string
	for _, p := range pins {
		if !h2.c.Has(p) {
			lost = append(lost, p[:8])
		}
	}
	if len(lost) > 0 {
		t.Errorf("pinned objects %v deleted by the restart (evicted in New before the pins were known); "+
			"they would cross the WAN again", lost)
	}
}

// Pinned objects may hold more than the cap. An unpinned artifact fetched
// then is the only object eviction may take, and is taken, but only once
// its readers have it open: Open (which waits for the whole fetch of a
// small artifact) and Get serve it rather than fail, and the cache is back
// under the cap but for its pins.
func TestUnpinnedMissIsServedWhenPinsFillTheCap(t *testing.T) {
	a, b, c := blob("a", 1000), blob("b", 1000), blob("c", 1000)
	up := newRangeFake(a, b, c)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 1500})
	h.c.SetPinned([]string{hashOf(a), hashOf(b)})
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))

	obj, err := h.c.Open(context.Background(), hashOf(c))
	if err != nil {
		t.Fatalf("Open of an unpinned artifact while pins fill the cap: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, c) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if got := h.mustGet(t, hashOf(c)); !bytes.Equal(got, c) {
		t.Fatal("Get: wrong bytes")
	}
	h.c.Wait()
	if h.c.Has(hashOf(c)) || !h.c.Has(hashOf(a)) || !h.c.Has(hashOf(b)) {
		t.Errorf("after serving c: a %v b %v c %v, want the pins only", h.c.Has(hashOf(a)), h.c.Has(hashOf(b)), h.c.Has(hashOf(c)))
	}
	if got := h.metric(t, "outpost_relay_cache_stored_bytes"); got != 2000 {
		t.Errorf("stored bytes = %v, want 2000 (the pins)", got)
	}
}

// Many unpinned misses at once while pins fill the cap: each fetch's
// commit evicts the others' objects as soon as it may, and every reader
// still gets its artifact (none is evicted between its fetch's end and
// its reader's open).
func TestConcurrentMissesAreServedWhenPinsFillTheCap(t *testing.T) {
	a, b := blob("a", 1000), blob("b", 1000)
	var others [][]byte
	for i := range 16 {
		others = append(others, blob(fmt.Sprintf("other %d ", i), 1000+i))
	}
	up := newRangeFake(append([][]byte{a, b}, others...)...)
	h := newHarnessOpts(t, up, "", Options{MaxBytes: 1500})
	h.c.SetPinned([]string{hashOf(a), hashOf(b)})
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))

	var wg sync.WaitGroup
	errs := make(chan error, 2*len(others))
	for _, o := range others {
		for range 2 {
			wg.Go(func() {
				obj, err := h.c.Open(context.Background(), hashOf(o))
				if err != nil {
					errs <- err
					return
				}
				defer obj.Close()
				if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, o) {
					errs <- fmt.Errorf("%s: %d bytes, %v", hashOf(o)[:8], len(got), err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.c.Wait()
	if got := h.metric(t, "outpost_relay_cache_stored_bytes"); got != 2000 {
		t.Errorf("stored bytes = %v, want 2000 (the pins)", got)
	}
}

// A detached fetch goes on to the end with no reader left, as many at once
// as Options.Detached allows; beyond that a fetch ends with its readers,
// and Stop ends detached ones, keeping their bytes to resume.
func TestDetachedFetchesAreBoundedAndStop(t *testing.T) {
	x, y := blob("x", 3<<20), blob("y", 3<<20)
	up := newRangeFake(x, y)
	up.valve = newValve(1 << 20)
	h := newHarnessOpts(t, up, "", Options{Detached: 1})
	open := func(hash string) Object {
		t.Helper()
		obj, err := h.c.Open(context.Background(), hash)
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	ox, oy := open(hashOf(x)), open(hashOf(y))
	if !h.c.Detach(hashOf(x)) {
		t.Fatal("the first Detach was refused")
	}
	if h.c.Detach(hashOf(y)) {
		t.Fatal("a Detach beyond the bound was taken")
	}
	ox.Close()
	oy.Close()
	// y's fetch ends before the valve opens: a read past it would not
	// notice the cancellation.
	testutil.Eventually(t, 5*time.Second, func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return h.c.flights[hashOf(y)] == nil
	}, "the fetch beyond the bound did not end with its reader")
	up.valve.open(1 << 30)
	testutil.Eventually(t, 5*time.Second, func() bool { return h.c.Has(hashOf(x)) }, "the detached fetch did not complete")
	h.c.Wait()
	if h.c.Has(hashOf(y)) {
		t.Error("the fetch beyond the bound went on with no reader")
	}
	if h.c.Detach(hashOf(x)) {
		t.Error("Detach of a fetch that has ended")
	}

	// Stop does not wait for a detached fetch over a stalled WAN.
	z := blob("z", 3<<20)
	up.objects[hashOf(z)] = z
	up.valve = newValve(1 << 20)
	oz := open(hashOf(z))
	if !h.c.Detach(hashOf(z)) {
		t.Fatal("Detach refused once the earlier one had ended")
	}
	oz.Close()
	stopped := make(chan struct{})
	go func() { h.c.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		up.valve.open(1 << 30)
		t.Fatal("Stop waits for a detached fetch")
	}
	if _, err := os.Stat(filepath.Join(h.dir, tempDir, hashOf(z)+stateExt)); err != nil {
		t.Errorf("the stopped fetch's bytes are not kept to resume: %v", err)
	}
}

// flip returns a different two-digit hex prefix.
func flip(p string) string {
	if p == "00" {
		return "01"
	}
	return "00"
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		up   Upstream
	}{
		{"no dir", "", newFake()},
		{"no upstream", t.TempDir(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.dir, tt.up, logging.Discard(), prometheus.NewRegistry()); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func FuzzValidateHash(f *testing.F) {
	for _, s := range []string{"", "..", hashOf(nil), strings.ToUpper(hashOf(nil)), hashOf(nil)[:63] + "/", "../" + hashOf(nil)[3:]} {
		f.Add(s)
	}
	dir := f.TempDir()
	up := newFake()
	c, err := New(dir, up, logging.Discard(), nil)
	if err != nil {
		f.Fatal(err)
	}
	objects := filepath.Join(dir, objectsDir) + string(filepath.Separator)
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateHash(s)
		if (err == nil) != hashRE.MatchString(s) {
			t.Fatalf("ValidateHash(%q) = %v, disagrees with %v", s, err, hashRE)
		}
		if err != nil {
			if _, _, gerr := c.Get(context.Background(), s); !errors.Is(gerr, ErrInvalidHash) {
				t.Fatalf("Get(%q) = %v, want ErrInvalidHash", s, gerr)
			}
			if n := up.opens.Load(); n != 0 {
				t.Fatalf("Get(%q) reached the upstream", s)
			}
			return
		}
		p := c.objectPath(s)
		if !strings.HasPrefix(p, objects) || filepath.Base(p) != s || filepath.Clean(p) != p {
			t.Fatalf("objectPath(%q) = %q escapes %q", s, p, objects)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
