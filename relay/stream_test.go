package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/relay/internal/cache"
)

// stalledUpstream serves ranges from memory, letting bytes out only up to
// a limit the test raises: a file server behind a thin, stalled WAN.
type stalledUpstream struct {
	objects map[string][]byte
	mu      sync.Mutex
	limit   int64
	changed chan struct{}
	sent    atomic.Int64
}

func newStalled(limit int64, blobs ...[]byte) *stalledUpstream {
	u := &stalledUpstream{objects: map[string][]byte{}, limit: limit, changed: make(chan struct{})}
	for _, b := range blobs {
		u.objects[hashOf(b)] = b
	}
	return u
}

func (u *stalledUpstream) release(limit int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.limit = limit
	close(u.changed)
	u.changed = make(chan struct{})
}

func (u *stalledUpstream) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	return u.OpenRange(ctx, hash, 0, -1)
}

func (u *stalledUpstream) OpenRange(ctx context.Context, hash string, off, n int64) (io.ReadCloser, int64, error) {
	b, ok := u.objects[hash]
	if !ok {
		return nil, 0, fmt.Errorf("fake: %w", cache.ErrNotFound)
	}
	end := int64(len(b))
	if n >= 0 {
		end = min(end, off+n)
	}
	return &stalledReader{u: u, ctx: ctx, data: b, pos: off, end: end}, int64(len(b)), nil
}

type stalledReader struct {
	u        *stalledUpstream
	ctx      context.Context
	data     []byte
	pos, end int64
}

func (r *stalledReader) Read(p []byte) (int, error) {
	if r.pos >= r.end {
		return 0, io.EOF
	}
	for {
		r.u.mu.Lock()
		limit, ch := r.u.limit, r.u.changed
		r.u.mu.Unlock()
		if limit > r.pos {
			n := copy(p, r.data[r.pos:min(r.end, limit)])
			r.pos += int64(n)
			r.u.sent.Add(int64(n))
			return n, nil
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *stalledReader) Close() error { return nil }

func get(tb testing.TB, url string, header map[string]string) *http.Response {
	tb.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

// Over HTTP: a client gets the bytes that have arrived while the file
// server is still sending, Range requests at the edges of an object still
// being fetched behave, and the last byte waits for the hash.
func TestHTTPStreamsAMissAndRangesAtTheEdges(t *testing.T) {
	data := pattern(3 << 20)
	hash := hashOf(data)
	size := len(data)
	up := newStalled(1<<20, data)
	tr := startRelay(t, testConfig(t), WithUpstream(up))
	url := tr.url + BlobPath + hash

	whole := get(t, url, nil)
	if whole.StatusCode != 200 || whole.ContentLength != int64(size) || whole.Header.Get("X-Outpost-Source") != "fetch" {
		t.Fatalf("whole: %d, length %d, source %q", whole.StatusCode, whole.ContentLength, whole.Header.Get("X-Outpost-Source"))
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(whole.Body, head); err != nil || !bytes.Equal(head, data[:1<<20]) {
		t.Fatalf("first MiB while the file server stalls: %v", err)
	}
	// Ranges inside what has arrived are answered now.
	for _, tt := range []struct {
		rng, cr string
		body    []byte
	}{
		{"bytes=0-0", fmt.Sprintf("bytes 0-0/%d", size), data[:1]},
		{"bytes=1048575-1048575", fmt.Sprintf("bytes 1048575-1048575/%d", size), data[1<<20-1 : 1<<20]},
		{"bytes=1000-1999", fmt.Sprintf("bytes 1000-1999/%d", size), data[1000:2000]},
	} {
		resp := get(t, url, map[string]string{"Range": tt.rng})
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != tt.cr || err != nil || !bytes.Equal(body, tt.body) {
			t.Errorf("%s: %d %q, %d bytes, %v", tt.rng, resp.StatusCode, resp.Header.Get("Content-Range"), len(body), err)
		}
	}
	// Beyond the end is refused at once, even before the bytes exist.
	if resp := get(t, url, map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)}); resp.StatusCode != 416 ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Errorf("range at the size: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	// The last byte waits for the rest and its hash.
	type result struct {
		body []byte
		err  error
	}
	last := make(chan result, 1)
	go func() {
		resp := get(t, url, map[string]string{"Range": "bytes=-1"})
		b, err := io.ReadAll(resp.Body)
		last <- result{b, err}
	}()
	select {
	case r := <-last:
		t.Fatalf("last byte served before the object was whole: %v %v", r.body, r.err)
	case <-time.After(100 * time.Millisecond): // a negative check: any wait would do
	}
	up.release(int64(size))
	if r := <-last; r.err != nil || !bytes.Equal(r.body, data[size-1:]) {
		t.Errorf("last byte: %v %v", r.body, r.err)
	}
	rest, err := io.ReadAll(whole.Body)
	if err != nil || !bytes.Equal(rest, data[1<<20:]) {
		t.Fatalf("rest of the whole: %d bytes, %v", len(rest), err)
	}
	if got := up.sent.Load(); got != int64(size) {
		t.Errorf("file server sent %d bytes for 5 requests, want %d", got, size)
	}
	// Now a hit (once the verified copy is committed, which follows the
	// last byte sent by a moment), and the edges still hold.
	testutil.Eventually(t, 5*time.Second, func() bool {
		resp := get(t, url, map[string]string{"Range": "bytes=-1"})
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 206 || !bytes.Equal(b, data[size-1:]) {
			t.Fatalf("last byte: %d %v", resp.StatusCode, b)
		}
		return resp.Header.Get("X-Outpost-Source") == ""
	}, "the last byte never came from the cache")
}

// A stream of bytes that then fail verification is cut: the client sees a
// broken body, never a complete one, and nothing is cached.
func TestHTTPCutsAStreamThatFailsVerification(t *testing.T) {
	good := pattern(2 << 20)
	evil := bytes.Clone(good)
	evil[len(evil)/2] ^= 1
	up := newStalled(1 << 40)
	up.objects[hashOf(good)] = evil
	tr := startRelay(t, testConfig(t), WithUpstream(up))
	// The upstream here is fast: the whole can fail its check before the
	// response's first bytes left the relay, and then the cut comes before
	// the status line. Either way the client never holds a whole body.
	resp, err := http.Get(tr.url + BlobPath + hashOf(good))
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: the stream starts before verification", resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil || len(body) >= len(good) {
			t.Fatalf("read %d of %d bytes, err %v: want a cut", len(body), len(good), err)
		}
	}
	if got := tr.metric(t, "outpost_relay_cache_verify_failures_total", "reason", "sha256"); got != 1 {
		t.Errorf("verify failures = %v", got)
	}
	if got := tr.metric(t, "outpost_relay_cache_objects"); got != 0 {
		t.Errorf("objects = %v, want 0", got)
	}
}

// A relay killed in the middle of a download: the client resumes by range
// from a new relay on the same data directory and ends with the right
// bytes; the new relay resumes the upstream fetch from what the first one
// kept, and serves nothing before the whole has checked.
func TestRelayKilledMidDownload(t *testing.T) {
	data := pattern(4 << 20)
	hash := hashOf(data)
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 10 * time.Millisecond // the kill: downloads are cut
	up := newStalled(1<<20+12345, data)
	r1, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(up))
	if err != nil {
		t.Fatal(err)
	}
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r1.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, func() bool { return r1.Addr() != "" }, "relay never listened")
	resp := get(t, "http://"+r1.Addr()+BlobPath+hash, nil)
	var have bytes.Buffer
	if _, err := io.CopyN(&have, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	kill()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	rest, err := io.Copy(&have, resp.Body)
	if err == nil {
		t.Fatalf("the download survived the kill (%d more bytes)", rest)
	}
	if have.Len() >= len(data) {
		t.Fatal("a whole copy went out before verification")
	}

	cfg.Listen = "127.0.0.1:0"
	up2 := newStalled(1<<40, data)
	tr := startRelay(t, cfg, WithUpstream(up2))
	resp = get(t, tr.url+BlobPath+hash, map[string]string{"Range": fmt.Sprintf("bytes=%d-", have.Len())})
	if resp.StatusCode != 206 {
		t.Fatalf("resume: status %d", resp.StatusCode)
	}
	if _, err := io.Copy(&have, resp.Body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have.Bytes(), data) {
		t.Fatal("resumed download differs")
	}
	// It resumes the fetch the first one left, from at least the MiB the
	// client had received.
	if got := up2.sent.Load(); got > int64(len(data)-1<<20) {
		t.Errorf("new relay read %d bytes from the file server, want at most %d", got, len(data)-1<<20)
	}
}

// Against a real MinIO: a large artifact read in parallel ranges, streamed
// to concurrent clients, read once from the file server, with limits on.
func TestParallelRangesRealMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	const bucket = "outpost-artifacts"
	m.MakeBucket(t, bucket)
	data := pattern(6<<20 + 4321)
	hash := hashOf(data)
	if _, err := m.Client(t).PutObject(context.Background(), bucket, "sha256/"+hash, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.FileServer = FileServerConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	cfg.ParallelRanges, cfg.ParallelMinBytes = 3, 1<<20
	cfg.UpstreamBytesPerSec, cfg.EgressBytesPerSec = 1<<30, 1<<30 // on, but not in the way
	tr := startRelay(t, cfg)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			resp, body := do(t, "GET", tr.url+BlobPath+hash, nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Errorf("client %d: %d, %d bytes", i, resp.StatusCode, len(body))
			}
		})
	}
	wg.Wait()
	if got := tr.metric(t, "outpost_relay_cache_upstream_bytes_total"); got != float64(len(data)) {
		t.Errorf("upstream bytes %v, want %d", got, len(data))
	}
	if got := tr.metric(t, "outpost_relay_cache_upstream_fetches_total"); got != 1 {
		t.Errorf("fetches %v, want 1", got)
	}
}

// A HEAD of a miss over StreamMin answers as soon as the size is known;
// the fetch it started goes on to the end, so that HEAD pre-stages and the
// WAN bytes already read are not thrown away.
func TestHeadOfALargeMissPrestagesIt(t *testing.T) {
	data := pattern(3 << 20)
	hash := hashOf(data)
	up := newStalled(1<<20, data)
	tr := startRelay(t, testConfig(t), WithUpstream(up))
	resp, _ := do(t, "HEAD", tr.url+BlobPath+hash, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	up.release(int64(len(data))) // the file server sends the rest
	testutil.Eventually(t, 5*time.Second, func() bool { return tr.cache.Has(hash) },
		"after HEAD the artifact is not cached: the fetch HEAD started was cancelled when HEAD returned")
	if got := up.sent.Load(); got != int64(len(data)) {
		t.Errorf("the file server sent %d bytes, want %d (once)", got, len(data))
	}
}
