package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/pkg/logging"
)

// rangeFake is a RangeUpstream serving from memory. A valve, when set,
// lets bytes out only up to a position, so that a test can hold a fetch
// mid-way; breaks cut a connection once when it reaches an offset.
type rangeFake struct {
	objects map[string][]byte
	valve   *valve
	// deaf readers wait at the valve even once their fetch is cancelled,
	// as a read blocked in the kernel does.
	deaf bool

	mu     sync.Mutex
	breaks map[int64]bool // offsets at which one connection breaks, once
	calls  []string       // "off+n" of every open
	// refuseRanges, when set, fails every open that does not start at 0.
	refuseRanges error
	sent         atomic.Int64
}

func newRangeFake(blobs ...[]byte) *rangeFake {
	u := &rangeFake{objects: map[string][]byte{}, breaks: map[int64]bool{}}
	for _, b := range blobs {
		u.objects[hashOf(b)] = b
	}
	return u
}

func (u *rangeFake) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	return u.OpenRange(ctx, hash, 0, -1)
}

func (u *rangeFake) OpenRange(ctx context.Context, hash string, off, n int64) (io.ReadCloser, int64, error) {
	u.mu.Lock()
	u.calls = append(u.calls, fmt.Sprintf("%d+%d", off, n))
	u.mu.Unlock()
	if off > 0 && u.refuseRanges != nil {
		return nil, 0, u.refuseRanges
	}
	data, ok := u.objects[hash]
	if !ok {
		return nil, 0, fmt.Errorf("fake: %w", ErrNotFound)
	}
	end := int64(len(data))
	if n >= 0 {
		end = min(end, off+n)
	}
	return &rangeReader{u: u, ctx: ctx, data: data, pos: off, end: end}, int64(len(data)), nil
}

func (u *rangeFake) opens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.calls...)
}

type rangeReader struct {
	u        *rangeFake
	ctx      context.Context
	data     []byte
	pos, end int64
	broken   bool
}

var errReset = errors.New("connection reset by peer")

func (r *rangeReader) Read(p []byte) (int, error) {
	if r.broken {
		return 0, errReset
	}
	if r.pos >= r.end {
		return 0, io.EOF
	}
	limit := r.end
	if r.u.valve != nil {
		ctx := r.ctx
		if r.u.deaf {
			ctx = context.Background()
		}
		l, err := r.u.valve.wait(ctx, r.pos)
		if err != nil {
			return 0, err
		}
		limit = min(limit, l)
	}
	n := min(int64(len(p)), 4096, limit-r.pos)
	r.u.mu.Lock()
	for b := range r.u.breaks {
		if b > r.pos && b <= r.pos+n {
			n = b - r.pos
			delete(r.u.breaks, b)
			r.broken = true
		}
	}
	r.u.mu.Unlock()
	copy(p, r.data[r.pos:r.pos+n])
	r.pos += n
	r.u.sent.Add(n)
	return int(n), nil
}

func (r *rangeReader) Close() error { return nil }

// valve lets bytes through up to a limit that the test raises.
type valve struct {
	mu      sync.Mutex
	limit   int64
	changed chan struct{}
}

func newValve(limit int64) *valve { return &valve{limit: limit, changed: make(chan struct{})} }

func (v *valve) open(limit int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.limit = limit
	close(v.changed)
	v.changed = make(chan struct{})
}

// wait returns the limit once it is beyond pos.
func (v *valve) wait(ctx context.Context, pos int64) (int64, error) {
	for {
		v.mu.Lock()
		l, ch := v.limit, v.changed
		v.mu.Unlock()
		if l > pos {
			return l, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func newHarnessOpts(tb testing.TB, up Upstream, dir string, o Options) *harness {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	reg := prometheus.NewRegistry()
	c, err := New(dir, up, logging.Discard(), reg, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Wait)
	return &harness{c: c, dir: dir, reg: reg}
}

// readN reads exactly n bytes or fails.
func readN(tb testing.TB, r io.Reader, n int) []byte {
	tb.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		tb.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

// A reader that joins a fetch still running reads what has arrived at
// once, follows the rest, and gets the last byte only after verification.
func TestOpenStreamsAFetchInProgress(t *testing.T) {
	data := blob("streamed ", 3<<20)
	hash := hashOf(data)
	up := newRangeFake(data)
	up.valve = newValve(1 << 20) // a third has arrived, the rest is held
	h := newHarnessOpts(t, up, "", Options{ParallelMin: 1 << 40})

	first, err := h.c.Open(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if first.Hit() || first.Size() != int64(len(data)) {
		t.Fatalf("hit %v size %d, want a miss of %d bytes", first.Hit(), first.Size(), len(data))
	}
	// Readable while the upstream is stalled: nothing waits for the whole.
	if got := readN(t, first, 1<<20); !bytes.Equal(got, data[:1<<20]) {
		t.Fatal("first reader: wrong bytes")
	}
	late, err := h.c.Open(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if got := readN(t, late, 1000); !bytes.Equal(got, data[:1000]) {
		t.Fatal("late reader: wrong first bytes")
	}
	// Up to the last byte, which waits for the hash.
	up.valve.open(int64(len(data)))
	rest := readN(t, first, len(data)-(1<<20))
	if !bytes.Equal(rest, data[1<<20:]) {
		t.Fatal("first reader: wrong rest")
	}
	if _, err := first.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the end: %v, want EOF", err)
	}
	all, err := io.ReadAll(late)
	if err != nil || !bytes.Equal(all, data[1000:]) {
		t.Fatalf("late reader: %d bytes, %v", len(all), err)
	}
	if n := len(up.opens()); n != 1 {
		t.Errorf("upstream opened %d times, want 1", n)
	}
	h.c.Wait()
	if !h.c.Has(hash) {
		t.Error("object not cached after the fetch")
	}
	if got := h.metric(t, "outpost_relay_cache_upstream_bytes_total"); got != float64(len(data)) {
		t.Errorf("upstream bytes = %v, want %d", got, len(data))
	}
}

// A stream of bytes that then fail their hash is cut with the error, and
// never delivers the last byte.
func TestOpenCutsAStreamThatFailsVerification(t *testing.T) {
	good := blob("good ", 2<<20)
	evil := bytes.Clone(good)
	evil[len(evil)-1] ^= 1 // only the very last byte differs
	hash := hashOf(good)
	up := newRangeFake()
	up.objects[hash] = evil
	h := newHarnessOpts(t, up, "", Options{})
	obj, err := h.c.Open(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("read: %v, want ErrIntegrity", err)
	}
	if len(got) >= len(good) {
		t.Fatalf("read %d bytes of %d: the last must be held back", len(got), len(good))
	}
	h.c.Wait()
	if h.c.Has(hash) {
		t.Error("bad object cached")
	}
	if files := h.files(t); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

// A broken upstream connection is resumed by range from where it stopped:
// the WAN carries each byte once.
func TestFetchResumesByRange(t *testing.T) {
	tests := []struct {
		name     string
		parallel int
		breaks   []int64
	}{
		{"one stream, one break", 1, []int64{700_000}},
		{"one stream, three breaks", 1, []int64{1, 1 << 20, 2<<20 + 5}},
		{"four ranges, breaks in two", 4, []int64{100, 3<<20 + 77}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := blob(tt.name, 4<<20)
			up := newRangeFake(data)
			for _, b := range tt.breaks {
				up.breaks[b] = true
			}
			h := newHarnessOpts(t, up, "", Options{Parallel: tt.parallel, ParallelMin: 1, Chunk: 1 << 20, RetryWait: time.Millisecond})
			if got := h.mustGet(t, hashOf(data)); !bytes.Equal(got, data) {
				t.Fatal("wrong bytes")
			}
			if got := up.sent.Load(); got != int64(len(data)) {
				t.Errorf("upstream sent %d bytes, want exactly %d", got, len(data))
			}
			if got := h.metric(t, "outpost_relay_cache_upstream_resumes_total"); got != float64(len(tt.breaks)) {
				t.Errorf("resumes = %v, want %d", got, len(tt.breaks))
			}
			parts := 1
			if tt.parallel > 1 {
				parts = 4 // 4 MiB in 1 MiB chunks
			}
			if got, want := len(up.opens()), parts+len(tt.breaks); got != want {
				t.Errorf("upstream opened %d times (%v), want %d", got, up.opens(), want)
			}
		})
	}
}

// An upstream that breaks and then refuses every resume is given up on
// after the configured retries, with a clear error and nothing kept.
func TestFetchGivesUpAfterRetries(t *testing.T) {
	data := blob("flaky ", 100_000)
	up := newRangeFake(data)
	up.breaks[1000] = true
	up.refuseRanges = errors.New("503 slow down")
	h := newHarnessOpts(t, up, "", Options{Retries: 3, RetryWait: time.Millisecond})
	_, _, err := h.c.Get(context.Background(), hashOf(data))
	if !errors.Is(err, ErrUpstream) || !errors.Is(err, up.refuseRanges) {
		t.Fatalf("Get: %v, want ErrUpstream wrapping the refusal", err)
	}
	if got := len(up.opens()); got != 4 {
		t.Errorf("upstream opened %d times, want 1 + 3 retries", got)
	}
	h.c.Wait()
	// What came is kept, and the next fetch resumes from it.
	hash := hashOf(data)
	if files := h.files(t); !equal(files, []string{"tmp/" + hash + ".partial", "tmp/" + hash + ".state"}) {
		t.Errorf("files left: %v, want the partial and its state", files)
	}
	up.refuseRanges = nil
	sent := up.sent.Load()
	if got := h.mustGet(t, hash); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after resuming")
	}
	if got := up.sent.Load() - sent; got != int64(len(data)-1000) {
		t.Errorf("resumed with %d bytes, want %d", got, len(data)-1000)
	}
}

// Large objects are read as chunks, several at once, that together make
// the whole; smaller ones in at most two requests.
func TestFetchParallelRanges(t *testing.T) {
	data := blob("parallel ", 9<<20+12345)
	up := newRangeFake(data)
	h := newHarnessOpts(t, up, "", Options{Parallel: 3, ParallelMin: 8 << 20, Chunk: 4 << 20})
	if got := h.mustGet(t, hashOf(data)); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	calls := up.opens()
	want := []string{"0+4194304", "4194304+4194304", fmt.Sprintf("8388608+%d", len(data)-8<<20)}
	if len(calls) != 3 || calls[0] != want[0] || !(equal(calls[1:], want[1:]) || equal([]string{calls[2], calls[1]}, want[1:])) {
		t.Errorf("upstream calls %v, want %v", calls, want)
	}
	if got := up.sent.Load(); got != int64(len(data)) {
		t.Errorf("upstream sent %d bytes, want %d", got, len(data))
	}
	for _, tt := range []struct {
		size  int
		calls []string
	}{
		{1000, []string{"0+4194304"}},
		{4 << 20, []string{"0+4194304"}},
		{6 << 20, []string{"0+4194304", "4194304+2097152"}},
	} {
		b := blob(fmt.Sprint(tt.size), tt.size)
		up := newRangeFake(b)
		h := newHarnessOpts(t, up, "", Options{Parallel: 3, ParallelMin: 8 << 20, Chunk: 4 << 20})
		if got := h.mustGet(t, hashOf(b)); !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: wrong bytes", tt.size)
		}
		if got := up.opens(); !equal(got, tt.calls) {
			t.Errorf("%d bytes: calls %v, want %v", tt.size, got, tt.calls)
		}
	}
}

// Readers leaving a shared fetch: the others go on; when the last leaves
// the fetch is cancelled, unless the artifact is pinned.
func TestReadersLeavingASharedFetch(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			data := blob("shared ", 3<<20)
			hash := hashOf(data)
			up := newRangeFake(data)
			up.valve = newValve(1 << 20)
			h := newHarnessOpts(t, up, "", Options{})
			if pinned {
				h.c.SetPinned([]string{hash})
			}
			a, err := h.c.Open(context.Background(), hash)
			if err != nil {
				t.Fatal(err)
			}
			b, err := h.c.Open(context.Background(), hash)
			if err != nil {
				t.Fatal(err)
			}
			readN(t, a, 1000)
			a.Close() // one client disconnects mid-way
			readN(t, b, 1<<20)
			if h.waiters(hash) != 1 {
				t.Fatalf("waiters = %d, want 1", h.waiters(hash))
			}
			b.Close() // and the last one
			if !pinned {
				h.c.Wait() // the fetch ends without the valve opening
				if h.c.Has(hash) {
					t.Fatal("cancelled fetch cached")
				}
				// Its bytes are kept: the next fetch goes on from them.
				up.valve.open(int64(len(data)))
				if got := h.mustGet(t, hash); !bytes.Equal(got, data) {
					t.Fatal("wrong bytes")
				}
				if got := up.sent.Load(); got != int64(len(data)) {
					t.Errorf("upstream sent %d bytes in all, want %d", got, len(data))
				}
				return
			}
			up.valve.open(int64(len(data)))
			h.c.Wait()
			if !h.c.Has(hash) {
				t.Fatal("pinned fetch did not complete after its readers left")
			}
			if got := h.mustGet(t, hash); !bytes.Equal(got, data) {
				t.Fatal("wrong bytes")
			}
		})
	}
}

// A reader that comes while a fetch that every reader left is still
// stopping gets the whole object (from the next fetch, which resumes from
// the bytes kept), not a stream of the dying one that is cut.
func TestReaderAfterEveryReaderLeft(t *testing.T) {
	data := blob("rejoined ", 3<<20)
	hash := hashOf(data)
	up := newRangeFake(data)
	up.valve = newValve(1 << 20)
	up.deaf = true
	h := newHarnessOpts(t, up, "", Options{})
	a, err := h.c.Open(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	readN(t, a, 1000)
	a.Close() // the fetch is cancelled, but its read is still blocked

	type result struct {
		got []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b, err := h.c.Open(ctx, hash)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer b.Close()
		got, err := io.ReadAll(b)
		res <- result{got, err}
	}()
	time.Sleep(50 * time.Millisecond) // let the reader come before the fetch stops
	up.valve.open(int64(len(data)))
	r := <-res
	if r.err != nil {
		t.Fatalf("reader after the others left: %v", r.err)
	}
	if !bytes.Equal(r.got, data) {
		t.Fatalf("got %d bytes, not the object", len(r.got))
	}
}

// The cap evicts least recently used objects first, never pinned ones.
func TestEvictionLRUAndPins(t *testing.T) {
	a, b, c, d := blob("a", 1000), blob("b", 1000), blob("c", 1000), blob("d", 1000)
	up := newRangeFake(a, b, c, d)
	dir := t.TempDir()
	h := newHarnessOpts(t, up, dir, Options{MaxBytes: 2500})
	h.c.SetPinned([]string{hashOf(a)})
	h.mustGet(t, hashOf(a))
	h.mustGet(t, hashOf(b))
	// a is pinned: c pushes b out even though a is older.
	h.mustGet(t, hashOf(c))
	if !h.c.Has(hashOf(a)) || h.c.Has(hashOf(b)) || !h.c.Has(hashOf(c)) {
		t.Fatalf("after c: a %v b %v c %v, want a and c", h.c.Has(hashOf(a)), h.c.Has(hashOf(b)), h.c.Has(hashOf(c)))
	}
	// Unpinned, a is the least recently used once c has been read again.
	h.c.SetPinned(nil)
	h.mustGet(t, hashOf(c))
	h.mustGet(t, hashOf(d))
	if h.c.Has(hashOf(a)) || !h.c.Has(hashOf(c)) || !h.c.Has(hashOf(d)) {
		t.Fatalf("after d: a %v c %v d %v, want c and d", h.c.Has(hashOf(a)), h.c.Has(hashOf(c)), h.c.Has(hashOf(d)))
	}
	if got := h.metric(t, "outpost_relay_cache_evictions_total"); got != 2 {
		t.Errorf("evictions = %v, want 2", got)
	}
	if got := h.metric(t, "outpost_relay_cache_stored_bytes"); got != 2000 {
		t.Errorf("stored bytes = %v, want 2000", got)
	}
	// The order survives a restart, and a smaller cap applies as soon as
	// the pins are known (here: none).
	h.c.Wait()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(h.c.objectPath(hashOf(c)), old, old); err != nil {
		t.Fatal(err)
	}
	h2 := newHarnessOpts(t, newRangeFake(), dir, Options{MaxBytes: 1500})
	h2.c.SetPinned(nil)
	if h2.c.Has(hashOf(c)) || !h2.c.Has(hashOf(d)) {
		t.Errorf("after restart with a smaller cap: c %v d %v, want d only", h2.c.Has(hashOf(c)), h2.c.Has(hashOf(d)))
	}
}

// A relay that stopped mid-fetch leaves a half-written temp file and its
// state: the next start resumes from it; without its state, or with bytes
// that turn out wrong, it is never served and the object comes whole.
func TestRestartWithHalfWrittenObject(t *testing.T) {
	data := blob("half ", 3<<20)
	hash := hashOf(data)
	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		failOnce bool  // the first Get after the restart fails its hash
		refetch  int64 // bytes the restarted cache reads in all
	}{
		{name: "resumes from the kept bytes", damage: func(*testing.T, string) {}, refetch: 2 << 20},
		{name: "a partial without its state is dropped", damage: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, tempDir, hash+stateExt)); err != nil {
				t.Fatal(err)
			}
		}, refetch: 3 << 20},
		{name: "a state that does not fit is dropped", damage: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, tempDir, hash+stateExt), []byte(`{"size":5,"parts":[[0,9,3]]}`), 0o600)
		}, refetch: 3 << 20},
		{name: "kept bytes that were damaged fail the hash, then come whole", damage: func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, tempDir, hash+partialExt), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{'X'}, 100)
			f.Close()
		}, failOnce: true, refetch: 2<<20 + 3<<20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			up := newRangeFake(data)
			up.valve = newValve(1 << 20)
			h := newHarnessOpts(t, up, dir, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			obj, err := h.c.Open(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			readN(t, obj, 1<<20) // 1 MiB is on disk
			cancel()             // the relay stops
			obj.Close()
			h.c.Wait()
			tt.damage(t, dir)

			up2 := newRangeFake(data)
			h2 := newHarnessOpts(t, up2, dir, Options{})
			if h2.c.Has(hash) {
				t.Fatal("half-written object taken as cached")
			}
			if tt.failOnce {
				if _, _, err := h2.c.Get(context.Background(), hash); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("damaged partial: %v, want ErrIntegrity", err)
				}
				h2.c.Wait()
			}
			if got := h2.mustGet(t, hash); !bytes.Equal(got, data) {
				t.Fatal("wrong bytes after restart")
			}
			if got := up2.sent.Load(); got != tt.refetch {
				t.Errorf("read %d bytes from the upstream, want %d", got, tt.refetch)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, tempDir, "*")); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

func FuzzDecodeState(f *testing.F) {
	for _, s := range []string{`{"size":10,"parts":[[0,10,4]]}`, `{"size":10,"parts":[[0,5,5],[5,10,7]]}`, `{}`, `{"size":-1}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, size, err := decodeState(b)
		if err != nil {
			return
		}
		var at int64
		for _, p := range parts {
			if p.off != at || p.pos < p.off || p.pos > p.end || p.end > size {
				t.Fatalf("accepted a bad state %s: %+v", b, parts)
			}
			at = p.end
		}
		if at != size {
			t.Fatalf("accepted ranges ending at %d of %d", at, size)
		}
	})
}

// The upstream limiter is shared and spent by every byte read.
func TestUpstreamLimiterIsSpent(t *testing.T) {
	data := blob("limited ", 600_000)
	lim := rate.NewLimiter(rate.Limit(1), 1<<20) // refills 1 byte/s: what is spent stays spent
	h := newHarnessOpts(t, newRangeFake(data), "", Options{UpstreamLimit: lim})
	h.mustGet(t, hashOf(data))
	if tokens := lim.Tokens(); tokens > float64(1<<20-len(data))+10 {
		t.Errorf("limiter has %.0f tokens left, want about %d", tokens, 1<<20-len(data))
	}
}
