package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/httprange"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/relay/internal/cache"
)

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fakeUpstream serves artifacts from memory; configure before use.
type fakeUpstream struct {
	objects map[string][]byte
	openErr error
	gate    chan struct{} // when set, Open waits for it or its ctx
	mu      sync.Mutex
	opened  []string
}

func newFake(blobs ...[]byte) *fakeUpstream {
	u := &fakeUpstream{objects: map[string][]byte{}}
	for _, b := range blobs {
		u.objects[hashOf(b)] = b
	}
	return u
}

func (u *fakeUpstream) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	u.mu.Lock()
	u.opened = append(u.opened, hash)
	u.mu.Unlock()
	if u.gate != nil {
		select {
		case <-u.gate:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	if u.openErr != nil {
		return nil, 0, u.openErr
	}
	b, ok := u.objects[hash]
	if !ok {
		return nil, 0, fmt.Errorf("fake: sha256/%s: %w", hash, cache.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (u *fakeUpstream) opens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.opened...)
}

// testRelay is a relay running on 127.0.0.1 for one test.
type testRelay struct {
	*Relay
	url  string
	reg  *prometheus.Registry
	done chan error
	stop context.CancelFunc
}

func testConfig(tb testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = tb.TempDir()
	cfg.ShutdownTimeout = 2 * time.Second
	// These tests are about content, not transport: plain HTTP (HTTPS has
	// its own tests in serving_test.go).
	cfg.PlainHTTP = true
	return cfg
}

// startRelay runs a relay until the test ends, and checks that Run then
// returns nil.
func startRelay(tb testing.TB, cfg Config, opts ...Option) *testRelay {
	tb.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(cfg, logging.Discard(), reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRelay{Relay: r, reg: reg, done: make(chan error, 1), stop: cancel}
	go func() { tr.done <- r.Run(ctx) }()
	testutil.Eventually(tb, 5*time.Second, func() bool { return r.Addr() != "" }, "relay never listened")
	tr.url = "http://" + r.Addr()
	tb.Cleanup(func() {
		cancel()
		if err := <-tr.done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return tr
}

func do(tb testing.TB, method, url string, header map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, body
}

func (tr *testRelay) metric(tb testing.TB, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := tr.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					ok = ok || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !ok {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestBlobRanges(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	hash := hashOf(data)
	up := newFake(data)
	tr := startRelay(t, testConfig(t), WithUpstream(up))
	url := tr.url + BlobPath + hash
	etag := `"` + hash + `"`

	tests := []struct {
		name         string
		method       string
		header       map[string]string
		status       int
		body         []byte
		contentRange string
		length       string
	}{
		{name: "whole", method: "GET", status: 200, body: data, length: "1000"},
		{name: "first byte", method: "GET", header: map[string]string{"Range": "bytes=0-0"},
			status: 206, body: data[:1], contentRange: "bytes 0-0/1000", length: "1"},
		{name: "last byte", method: "GET", header: map[string]string{"Range": "bytes=999-999"},
			status: 206, body: data[999:], contentRange: "bytes 999-999/1000", length: "1"},
		{name: "last byte by an end past the size", method: "GET", header: map[string]string{"Range": "bytes=999-5000"},
			status: 206, body: data[999:], contentRange: "bytes 999-999/1000"},
		{name: "suffix", method: "GET", header: map[string]string{"Range": "bytes=-10"},
			status: 206, body: data[990:], contentRange: "bytes 990-999/1000"},
		{name: "suffix longer than the artifact", method: "GET", header: map[string]string{"Range": "bytes=-5000"},
			status: 206, body: data, contentRange: "bytes 0-999/1000"},
		{name: "open end, resuming a download", method: "GET", header: map[string]string{"Range": "bytes=600-"},
			status: 206, body: data[600:], contentRange: "bytes 600-999/1000"},
		{name: "start at the size", method: "GET", header: map[string]string{"Range": "bytes=1000-"},
			status: 416, contentRange: "bytes */1000"},
		{name: "beyond the end", method: "GET", header: map[string]string{"Range": "bytes=5000-6000"},
			status: 416, contentRange: "bytes */1000"},
		{name: "if-range with our etag", method: "GET", header: map[string]string{"Range": "bytes=10-19", "If-Range": etag},
			status: 206, body: data[10:20], contentRange: "bytes 10-19/1000"},
		{name: "if-range with another etag sends all", method: "GET", header: map[string]string{"Range": "bytes=10-19", "If-Range": `"other"`},
			status: 200, body: data},
		{name: "too many ranges", method: "GET", header: map[string]string{"Range": "bytes=0-0" + strings.Repeat(",2-2", httprange.MaxRanges)},
			status: 416},
		{name: "not modified", method: "GET", header: map[string]string{"If-None-Match": etag}, status: 304},
		{name: "head", method: "HEAD", status: 200, length: "1000"},
		{name: "head of a range", method: "HEAD", header: map[string]string{"Range": "bytes=0-99"},
			status: 206, contentRange: "bytes 0-99/1000", length: "100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, url, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.length != "" && resp.Header.Get("Content-Length") != tt.length {
				t.Errorf("Content-Length %q, want %s", resp.Header.Get("Content-Length"), tt.length)
			}
			switch {
			case tt.status == 416:
				assertJSONError(t, resp, body, "range")
				if resp.Header.Get("Cache-Control") != "" {
					t.Errorf("an error carries Cache-Control %q", resp.Header.Get("Cache-Control"))
				}
			case tt.status < 300:
				if !bytes.Equal(body, tt.body) {
					t.Errorf("body: %d bytes, want %d", len(body), len(tt.body))
				}
				for k, want := range map[string]string{
					"Content-Type":  "application/octet-stream",
					"ETag":          etag,
					"Cache-Control": "public, max-age=31536000, immutable",
					"Accept-Ranges": "bytes",
					"Repr-Digest":   "sha-256=:" + base64.StdEncoding.EncodeToString(mustHex(hash)) + ":",
				} {
					if got := resp.Header.Get(k); got != want {
						t.Errorf("%s %q, want %q", k, got, want)
					}
				}
			}
		})
	}
	if n := len(up.opens()); n != 1 {
		t.Errorf("upstream opened %d times, want 1", n)
	}
	if got := tr.metric(t, "outpost_relay_served_bytes_total"); got < 1000 {
		t.Errorf("served bytes = %v", got)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func assertJSONError(tb testing.TB, resp *http.Response, body []byte, wantInMessage string) {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		tb.Fatalf("body %q is not {\"error\": ...}: %v", body, err)
	}
	if !strings.Contains(e.Error, wantInMessage) {
		tb.Errorf("error %q, want it to say %q", e.Error, wantInMessage)
	}
}

func TestBlobErrors(t *testing.T) {
	good := []byte("a good artifact")
	goodHash := hashOf(good)
	evil := []byte("not what was asked for")
	unknown := hashOf([]byte("nobody uploaded this"))

	tests := []struct {
		name    string
		up      func() *fakeUpstream
		method  string
		path    string
		status  int
		message string
		opens   int
	}{
		{name: "upper-case hash", path: BlobPath + strings.ToUpper(goodHash), status: 400, message: "malformed"},
		{name: "short hash", path: BlobPath + goodHash[:10], status: 400, message: "64 lower-case hex"},
		{name: "empty hash", path: BlobPath, status: 400, message: "malformed"},
		{name: "hash with a slash", path: BlobPath + goodHash[:32] + "/" + goodHash[32:], status: 400, message: "malformed"},
		{name: "encoded traversal", path: BlobPath + "..%2f..%2fetc%2fpasswd", status: 400, message: "malformed"},
		{name: "unknown artifact", path: BlobPath + unknown, status: 404, message: "not found", opens: 1},
		{name: "head of unknown artifact", method: "HEAD", path: BlobPath + unknown, status: 404, opens: 1},
		{name: "file server down", path: BlobPath + goodHash, status: 502, message: "file server: connection refused", opens: 1,
			up: func() *fakeUpstream {
				u := newFake(good)
				u.openErr = errors.New("connection refused")
				return u
			}},
		{name: "file server sends other bytes", path: BlobPath + goodHash, status: 502, message: "hash to sha256 " + hashOf(evil), opens: 1,
			up: func() *fakeUpstream {
				u := newFake()
				u.objects[goodHash] = evil
				return u
			}},
		{name: "unknown route", path: "/v1/nothing", status: 404, message: "not found"},
		{name: "wrong method", method: "DELETE", path: BlobPath + goodHash, status: 405, message: "Method Not Allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newFake(good)
			if tt.up != nil {
				up = tt.up()
			}
			tr := startRelay(t, testConfig(t), WithUpstream(up))
			method := tt.method
			if method == "" {
				method = "GET"
			}
			resp, body := do(t, method, tr.url+tt.path, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if method != "HEAD" {
				assertJSONError(t, resp, body, tt.message)
			}
			if n := len(up.opens()); n != tt.opens {
				t.Errorf("upstream opened %d times, want %d", n, tt.opens)
			}
			// Nothing unverified is kept: the same request fails the same way.
			if tt.status == 502 {
				if resp, _ := do(t, method, tr.url+tt.path, nil); resp.StatusCode != 502 {
					t.Errorf("second request: %d, want 502 again", resp.StatusCode)
				}
			}
		})
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	data := []byte("counted")
	tr := startRelay(t, testConfig(t), WithUpstream(newFake(data)))
	resp, body := do(t, "GET", tr.url+"/healthz", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	do(t, "GET", tr.url+BlobPath+hashOf(data), nil)
	do(t, "GET", tr.url+BlobPath+hashOf(data), nil)

	resp, body = do(t, "GET", tr.url+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		"outpost_relay_cache_hits_total 1",
		"outpost_relay_cache_misses_total 1",
		fmt.Sprintf("outpost_relay_cache_upstream_bytes_total %d", len(data)),
		fmt.Sprintf(`outpost_relay_served_bytes_total{source="cache"} %d`, len(data)),
		fmt.Sprintf(`outpost_relay_served_bytes_total{source="fetch"} %d`, len(data)),
		"outpost_relay_cache_hit_ratio 0.5",
		`outpost_relay_http_requests_total{code="200",route="blob"} 2`,
		`outpost_relay_cache_verify_failures_total{reason="sha256"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMetricsNeedAGatherer(t *testing.T) {
	// A Registerer that cannot gather: /metrics is absent unless a
	// Gatherer is given.
	type onlyRegisterer struct{ prometheus.Registerer }
	for _, tt := range []struct {
		name   string
		opts   []Option
		status int
	}{
		{"no gatherer", nil, 404},
		{"with gatherer", []Option{WithGatherer(prometheus.NewRegistry())}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(testConfig(t), logging.Discard(), onlyRegisterer{prometheus.NewRegistry()},
				append(tt.opts, WithUpstream(newFake()))...)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			r.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != tt.status {
				t.Fatalf("/metrics: %d, want %d", rec.Code, tt.status)
			}
		})
	}
}

func TestNewNeedsAFileServer(t *testing.T) {
	_, err := New(testConfig(t), logging.Discard(), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "no file server") {
		t.Fatalf("New = %v, want an error saying there is no file server", err)
	}
	cfg := testConfig(t)
	cfg.DataDir = ""
	if _, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake())); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

func TestShutdownCutsStuckDownloads(t *testing.T) {
	up := newFake()
	up.gate = make(chan struct{}) // never opens: the file server hangs
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 100 * time.Millisecond
	r, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(up))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, func() bool { return r.Addr() != "" }, "relay never listened")

	client := &http.Client{}
	got := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + r.Addr() + BlobPath + hashOf([]byte("slow")))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		got <- err
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return len(up.opens()) == 1 }, "download never reached the upstream")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
	<-got // the client saw an error or a 503; either way it is not left hanging
	client.CloseIdleConnections()
	if _, err := net.Dial("tcp", r.Addr()); err == nil {
		t.Error("still listening after Run returned")
	}
}

// A relay that stops while it pre-stages a pinned artifact over a stalled
// WAN stops within its shutdown timeout: the pinned fetch, which no reader
// waits for, is cancelled rather than waited for, and its bytes are kept
// so that the next start resumes from them.
func TestShutdownStopsThePrestageOfAPinnedArtifact(t *testing.T) {
	data := pattern(3 << 20)
	hash := hashOf(data)
	up := newStalled(1<<20, data) // a third arrives, then the WAN stalls
	defer up.release(int64(len(data)))
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	r, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(up))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, func() bool { return r.Addr() != "" }, "relay never listened")
	r.applyPolicy(1, []string{hash}, map[string]int64{hash: int64(len(data))})
	testutil.Eventually(t, 5*time.Second, func() bool { return up.sent.Load() == 1<<20 }, "pre-staging never started")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		up.release(int64(len(data))) // let it end before the test's directory goes
		<-done
		t.Fatalf("Run has not returned 3s after the stop (shutdown_timeout %v): it waits for the pinned fetch to complete", cfg.ShutdownTimeout)
	}

	// The next start reads only what the first did not.
	up2 := newStalled(int64(len(data)), data)
	tr := startRelay(t, cfg, WithUpstream(up2))
	tr.applyPolicy(1, []string{hash}, map[string]int64{hash: int64(len(data))})
	testutil.Eventually(t, 5*time.Second, func() bool { return tr.cache.Has(hash) }, "not pre-staged after the restart")
	if got := up2.sent.Load(); got != 2<<20 {
		t.Errorf("after the restart the file server sent %d bytes, want %d (the rest)", got, 2<<20)
	}
}

func TestComponents(t *testing.T) {
	boom := errors.New("gossip key rejected")
	t.Run("a failing component stops the relay", func(t *testing.T) {
		var stoppedOthers atomic.Bool
		r, err := New(testConfig(t), logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake()),
			WithComponent("gossip", ComponentFunc(func(ctx context.Context) error { return boom })),
			WithComponent("prestage", ComponentFunc(func(ctx context.Context) error {
				<-ctx.Done()
				stoppedOthers.Store(true)
				return ctx.Err()
			})))
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "gossip") {
			t.Fatalf("Run = %v, want the gossip error", err)
		}
		if !stoppedOthers.Load() {
			t.Error("the other component was not stopped")
		}
	})
	t.Run("components run until ctx ends", func(t *testing.T) {
		var ran atomic.Bool
		tr := startRelay(t, testConfig(t), WithUpstream(newFake()),
			WithComponent("enroll", ComponentFunc(func(ctx context.Context) error {
				ran.Store(true)
				<-ctx.Done()
				return ctx.Err()
			})))
		testutil.Eventually(t, 5*time.Second, ran.Load, "component never ran")
		tr.stop()
		if err := <-tr.done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		tr.done <- nil // for the Cleanup
	})
}

func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Listen = busy.Addr().String()
	r, err := New(cfg, logging.Discard(), prometheus.NewRegistry(), WithUpstream(newFake()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a busy port = %v", err)
	}
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run = %v", err)
	}
}

// The relay against a real MinIO, configured the two ways it can be: fixed
// credentials in its config, and short-lived ones from a fetch function (the
// coordinator's role).
func TestRealMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	const bucket = "outpost-artifacts"
	m.MakeBucket(t, bucket)
	data := bytes.Repeat([]byte("from the head office "), 50_000)
	hash := hashOf(data)
	client := m.Client(t)
	put := func(key string, b []byte) {
		if _, err := client.PutObject(context.Background(), bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("sha256/"+hash, data)
	tampered := hashOf([]byte("the real thing"))
	put("sha256/"+tampered, []byte("a swapped object"))

	var fetches atomic.Int64
	for _, tt := range []struct {
		name string
		cfg  func(c *Config)
		opts []Option
	}{
		{name: "static credentials", cfg: func(c *Config) {
			c.FileServer = FileServerConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
		}},
		{name: "coordinator credentials", cfg: func(c *Config) {}, opts: []Option{
			WithFileServer(func(ctx context.Context) (*wire.FileServerResponse, error) {
				fetches.Add(1)
				return &wire.FileServerResponse{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey,
					SecretKey: m.SecretKey, ExpiresUnix: time.Now().Add(time.Hour).Unix(), Region: "us-east-1"}, nil
			}),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.cfg(&cfg)
			tr := startRelay(t, cfg, tt.opts...)
			for i := range 2 {
				resp, body := do(t, "GET", tr.url+BlobPath+hash, nil)
				if resp.StatusCode != 200 || !bytes.Equal(body, data) {
					t.Fatalf("get %d: status %d, %d bytes: %.300s", i, resp.StatusCode, len(body), body)
				}
			}
			resp, body := do(t, "GET", tr.url+BlobPath+hash, map[string]string{"Range": "bytes=-21"})
			if resp.StatusCode != 206 || string(body) != "from the head office " {
				t.Fatalf("range: %d %q", resp.StatusCode, body)
			}
			if got := tr.metric(t, "outpost_relay_cache_upstream_fetches_total"); got != 1 {
				t.Errorf("fetches from MinIO = %v, want 1", got)
			}
			resp, body = do(t, "GET", tr.url+BlobPath+tampered, nil)
			if resp.StatusCode != 502 {
				t.Fatalf("tampered object: %d, want 502", resp.StatusCode)
			}
			assertJSONError(t, resp, body, "hash to sha256 "+hashOf([]byte("a swapped object")))
			resp, body = do(t, "GET", tr.url+BlobPath+hashOf([]byte("absent")), nil)
			if resp.StatusCode != 404 {
				t.Fatalf("absent object: %d, want 404", resp.StatusCode)
			}
			assertJSONError(t, resp, body, "not found")
			if m, _ := filepath.Glob(filepath.Join(cfg.DataDir, "cache", "sha256", tampered[:2], tampered)); len(m) != 0 {
				t.Errorf("tampered object cached: %v", m)
			}
		})
	}
	if fetches.Load() != 1 {
		t.Errorf("coordinator asked %d times, want 1", fetches.Load())
	}
}

// An empty artifact is a valid upload. S3 refuses any range of an empty
// object (416 InvalidRange), including the first chunk the relay asks for
// on a miss: the relay reads it whole instead, checks the hash of no
// bytes, and serves it, from its cache the next time.
func TestEmptyArtifactThroughRealMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	const bucket = "outpost-artifacts"
	m.MakeBucket(t, bucket)
	empty := []byte{}
	hash := hashOf(empty)
	if _, err := m.Client(t).PutObject(context.Background(), bucket, "sha256/"+hash, bytes.NewReader(empty), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.FileServer = FileServerConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	tr := startRelay(t, cfg)
	for i, source := range []string{"fetch", ""} {
		resp, body := do(t, "GET", tr.url+BlobPath+hash, nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("X-Outpost-Source") != source {
			t.Fatalf("get %d of the empty artifact: status %d, source %q, body %.300s; want 200 and no bytes, source %q",
				i, resp.StatusCode, resp.Header.Get("X-Outpost-Source"), body, source)
		}
	}
}

// FuzzBlobPath feeds arbitrary names to the content route: malformed ones
// must be refused without reaching the file server, and nothing may fail
// with a server error.
func FuzzBlobPath(f *testing.F) {
	valid := hashOf([]byte("x"))
	for _, s := range []string{valid, strings.ToUpper(valid), "", "..", "../../etc/passwd", valid + "/x",
		"%2e%2e%2f", valid[:63] + "%00", "\x00", valid[:63] + "G"} {
		f.Add(s)
	}
	up := newFake()
	r, err := New(testConfig(f), logging.Discard(), prometheus.NewRegistry(), WithUpstream(up))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		before := len(up.opens())
		req := &http.Request{Method: "GET", URL: &url.URL{Path: BlobPath + name}, Header: http.Header{},
			Host: "relay", RequestURI: BlobPath + name}
		req = req.WithContext(context.Background())
		rec := httptest.NewRecorder()
		r.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d: %s", name, rec.Code, rec.Body)
		}
		opened := up.opens()[before:]
		for _, h := range opened {
			if cache.ValidateHash(h) != nil {
				t.Fatalf("%q reached the upstream as %q", name, h)
			}
		}
		if cache.ValidateHash(name) == nil {
			if rec.Code != 404 || len(opened) != 1 {
				t.Fatalf("%q: status %d, %d upstream opens; want 404 after one", name, rec.Code, len(opened))
			}
		} else if rec.Code == 200 || rec.Code == 206 {
			t.Fatalf("%q served with %d", name, rec.Code)
		}
	})
}
