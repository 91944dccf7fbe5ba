package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/relay/internal/cache"
)

const bucket = "outpost-artifacts"

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fakeClock is a settable now for the refresh schedule.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newUpstream(tb testing.TB, src CredentialSource) (*Upstream, *fakeClock) {
	tb.Helper()
	u, err := New(src, logging.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	u.now = clock.now
	return u, clock
}

// put stores data as an artifact, the way the coordinator's upload does.
func put(tb testing.TB, c *minio.Client, bucketName string, data []byte) string {
	tb.Helper()
	hash := hashOf(data)
	_, err := c.PutObject(context.Background(), bucketName, KeyPrefix+hash, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		tb.Fatalf("put %s: %v", hash, err)
	}
	return hash
}

func read(tb testing.TB, u *Upstream, hash string) []byte {
	tb.Helper()
	rc, size, err := u.Open(context.Background(), hash)
	if err != nil {
		tb.Fatalf("Open %s: %v", hash, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatalf("read %s: %v", hash, err)
	}
	if size != int64(len(data)) {
		tb.Fatalf("Open said %d bytes, read %d", size, len(data))
	}
	return data
}

func TestOpenRealMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	m.MakeBucket(t, bucket)
	data := bytes.Repeat([]byte("outpost "), 200_000)
	hash := put(t, m.Client(t), bucket, data)
	empty := put(t, m.Client(t), bucket, nil)

	static := Static{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	u, _ := newUpstream(t, static)
	if got := read(t, u, hash); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	if got := read(t, u, empty); len(got) != 0 {
		t.Fatalf("empty artifact: %d bytes", len(got))
	}

	tests := []struct {
		name        string
		src         Static
		hash        string
		notFound    bool
		wantInError string
	}{
		{name: "missing artifact", src: static, hash: hashOf([]byte("never uploaded")), notFound: true},
		{name: "malformed hash", src: static, hash: "../" + hash[3:], wantInError: "invalid sha256"},
		{name: "missing bucket", src: with(static, func(s *Static) { s.Bucket = "no-such-bucket" }), hash: hash,
			wantInError: "bucket does not exist"},
		{name: "wrong secret", src: with(static, func(s *Static) { s.SecretKey = "wrong" }), hash: hash,
			wantInError: "signature"},
		{name: "unknown access key", src: with(static, func(s *Static) { s.AccessKey = "nobody" }), hash: hash,
			wantInError: "Access Key Id"},
		{name: "no secret", src: with(static, func(s *Static) { s.SecretKey = "" }), hash: hash,
			wantInError: "no secret key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := newUpstream(t, tt.src)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rc, _, err := u.Open(ctx, tt.hash)
			if err == nil {
				rc.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, cache.ErrNotFound) != tt.notFound {
				t.Fatalf("Open = %v; not found: %v, want %v", err, !tt.notFound, tt.notFound)
			}
			if !strings.Contains(err.Error(), tt.wantInError) {
				t.Fatalf("Open = %q, want it to say %q", err, tt.wantInError)
			}
		})
	}
}

func with(s Static, f func(*Static)) Static {
	f(&s)
	return s
}

// stsSource hands out short-lived, read-only credentials minted by MinIO's
// STS, the way the coordinator does, and counts its calls. A call whose
// number is in bad returns credentials MinIO will refuse.
type stsSource struct {
	m        *testutil.MinIO
	bucket   func() string
	endpoint func() string
	bad      map[int64]bool
	calls    atomic.Int64
}

func (s *stsSource) FileServer(ctx context.Context) (*wire.FileServerResponse, error) {
	n := s.calls.Add(1)
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",`+
		`"Action":["s3:GetObject","s3:GetBucketLocation"],"Resource":["arn:aws:s3:::%[1]s","arn:aws:s3:::%[1]s/*"]}]}`,
		s.bucket())
	creds, err := credentials.NewSTSAssumeRole("http://"+s.m.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey: s.m.AccessKey, SecretKey: s.m.SecretKey, Policy: policy, DurationSeconds: 900,
	})
	if err != nil {
		return nil, err
	}
	v, err := creds.GetWithContext(&credentials.CredContext{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("assume role: %w", err)
	}
	if v.SessionToken == "" || v.Expiration.IsZero() {
		return nil, fmt.Errorf("STS gave long-lived credentials: %+v", v.Expiration)
	}
	if s.bad[n] {
		v.SecretAccessKey = "revoked"
	}
	return &wire.FileServerResponse{
		Endpoint: s.endpoint(), Bucket: s.bucket(), AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey,
		SessionToken: v.SessionToken, ExpiresUnix: v.Expiration.Unix(), Region: "us-east-1",
	}, nil
}

func TestShortLivedCredentialsRealMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	m.MakeBucket(t, bucket)
	data := []byte("an artifact behind short-lived credentials")
	hash := put(t, m.Client(t), bucket, data)

	src := &stsSource{m: m, bad: map[int64]bool{2: true},
		bucket: func() string { return bucket }, endpoint: func() string { return m.Endpoint }}
	u, clock := newUpstream(t, FetchFunc(src.FileServer))

	steps := []struct {
		name      string
		advance   time.Duration
		wantCalls int64
	}{
		{"first read fetches credentials", 0, 1},
		{"valid credentials are reused", time.Minute, 1},
		{"still before the refresh point", 10 * time.Minute, 1},
		// 80% of the 15-minute lifetime is past: a refresh is due. The
		// coordinator's answer is refused (call 2), so Open fetches once
		// more (call 3) and succeeds.
		{"refresh before expiry, refused, then fresh", 2*time.Minute + time.Second, 3},
		{"the fresh credentials are reused", time.Second, 3},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		if got := read(t, u, hash); !bytes.Equal(got, data) {
			t.Fatalf("%s: wrong bytes", st.name)
		}
		if got := src.calls.Load(); got != st.wantCalls {
			t.Fatalf("%s: %d credential fetches, want %d", st.name, got, st.wantCalls)
		}
	}

	// The credentials are read-only: nothing can be written with them.
	u.mu.Lock()
	cur := u.cur
	u.mu.Unlock()
	ro, err := minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cur.AccessKey, cur.SecretKey, cur.SessionToken),
		Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ro.PutObject(context.Background(), bucket, KeyPrefix+hashOf(nil), bytes.NewReader(nil), 0, minio.PutObjectOptions{})
	if minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Fatalf("write with relay credentials: %v, want AccessDenied", err)
	}
}

func TestFileServerMovesRealMinIO(t *testing.T) {
	first, second := testutil.StartMinIO(t), testutil.StartMinIO(t)
	first.MakeBucket(t, bucket)
	second.MakeBucket(t, "moved-artifacts")
	oldData, newData := []byte("only on the first server"), []byte("only on the second server")
	oldHash := put(t, first.Client(t), bucket, oldData)
	newHash := put(t, second.Client(t), "moved-artifacts", newData)

	var moved atomic.Bool
	src := FetchFunc(func(ctx context.Context) (*wire.FileServerResponse, error) {
		m, b := first, bucket
		if moved.Load() {
			m, b = second, "moved-artifacts"
		}
		return &wire.FileServerResponse{Endpoint: m.Endpoint, Bucket: b, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
			ExpiresUnix: time.Now().Add(time.Hour).Unix(), Region: "us-east-1"}, nil
	})
	u, clock := newUpstream(t, src)
	if got := read(t, u, oldHash); !bytes.Equal(got, oldData) {
		t.Fatal("wrong bytes from the first server")
	}
	firstClient := u.client

	moved.Store(true)
	clock.advance(50 * time.Minute)
	if got := read(t, u, newHash); !bytes.Equal(got, newData) {
		t.Fatal("wrong bytes from the second server")
	}
	if u.client == firstClient {
		t.Error("the client was not rebuilt for the new endpoint")
	}
	if _, _, err := u.Open(context.Background(), oldHash); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("old artifact after the move: %v, want not found", err)
	}
}

// scriptedSource answers from a list, one entry per call; the last repeats.
type scriptedSource struct {
	mu      sync.Mutex
	answers []answer
	calls   int
	block   chan struct{} // when set, calls wait for it
}

type answer struct {
	resp *wire.FileServerResponse
	err  error
}

func (s *scriptedSource) FileServer(ctx context.Context) (*wire.FileServerResponse, error) {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(s.calls, len(s.answers)-1)]
	s.calls++
	return a.resp, a.err
}

func (s *scriptedSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func creds(key string, expires time.Time) *wire.FileServerResponse {
	r := &wire.FileServerResponse{Endpoint: "127.0.0.1:9", Bucket: bucket, AccessKey: key, SecretKey: "s"}
	if !expires.IsZero() {
		r.ExpiresUnix = expires.Unix()
	}
	return r
}

func TestRefreshSchedule(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	down := errors.New("coordinator unreachable")
	type step struct {
		at      time.Duration // since start
		wantKey string        // "" means an error
		calls   int
	}
	tests := []struct {
		name    string
		answers []answer
		steps   []step
	}{
		{
			name:    "never-expiring credentials are fetched once",
			answers: []answer{{resp: creds("a", time.Time{})}, {resp: creds("b", time.Time{})}},
			steps:   []step{{0, "a", 1}, {24 * time.Hour, "a", 1}, {1000 * time.Hour, "a", 1}},
		},
		{
			name:    "refresh at 80% of the lifetime",
			answers: []answer{{resp: creds("a", start.Add(100*time.Second))}, {resp: creds("b", start.Add(200*time.Second))}},
			steps:   []step{{0, "a", 1}, {79 * time.Second, "a", 1}, {80 * time.Second, "b", 2}, {99 * time.Second, "b", 2}},
		},
		{
			name: "a failed refresh keeps valid credentials and waits before retrying",
			answers: []answer{{resp: creds("a", start.Add(100*time.Second))}, {err: down},
				{resp: creds("c", start.Add(300*time.Second))}},
			steps: []step{{0, "a", 1}, {80 * time.Second, "a", 2}, {84 * time.Second, "a", 2}, {85 * time.Second, "c", 3}},
		},
		{
			name:    "a failed refresh after expiry is an error, for a while without asking again",
			answers: []answer{{resp: creds("a", start.Add(100*time.Second))}, {err: down}},
			steps:   []step{{0, "a", 1}, {100 * time.Second, "", 2}, {104 * time.Second, "", 2}, {105 * time.Second, "", 3}},
		},
		{
			name:    "an incomplete answer is refused",
			answers: []answer{{resp: &wire.FileServerResponse{Endpoint: "127.0.0.1:9", AccessKey: "a", SecretKey: "s"}}},
			steps:   []step{{0, "", 1}},
		},
		{
			name:    "an endpoint with a scheme is refused",
			answers: []answer{{resp: &wire.FileServerResponse{Endpoint: "https://s3.example", Bucket: "b", AccessKey: "a", SecretKey: "s"}}},
			steps:   []step{{0, "", 1}},
		},
		{
			name:    "already-expired credentials are used but refreshed every time",
			answers: []answer{{resp: creds("a", start.Add(-time.Second))}, {resp: creds("b", start.Add(time.Hour))}},
			steps:   []step{{0, "a", 1}, {0, "b", 2}, {time.Second, "b", 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &scriptedSource{answers: tt.answers}
			u, clock := newUpstream(t, src)
			clock.t = start
			for i, st := range tt.steps {
				clock.t = start.Add(st.at)
				r, _, err := u.current(context.Background())
				switch {
				case st.wantKey == "" && err == nil:
					t.Fatalf("step %d: got key %q, want an error", i, r.AccessKey)
				case st.wantKey != "" && err != nil:
					t.Fatalf("step %d: %v", i, err)
				case st.wantKey != "" && r.AccessKey != st.wantKey:
					t.Fatalf("step %d: key %q, want %q", i, r.AccessKey, st.wantKey)
				}
				if src.count() != st.calls {
					t.Fatalf("step %d: %d fetches, want %d", i, src.count(), st.calls)
				}
			}
		})
	}
}

// The provider that minio-go asks must hand out a refresh at once, not when
// minio-go's own cache would expire the old value.
func TestProviderFollowsRefresh(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	src := &scriptedSource{answers: []answer{
		{resp: creds("a", start.Add(100*time.Second))},
		{resp: creds("b", start.Add(200*time.Second))},
	}}
	u, clock := newUpstream(t, src)
	clock.t = start
	c := credentials.New(&provider{u: u})
	for _, st := range []struct {
		at   time.Duration
		want string
	}{{0, "a"}, {50 * time.Second, "a"}, {90 * time.Second, "b"}} {
		clock.t = start.Add(st.at)
		v, err := c.GetWithContext(nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.AccessKeyID != st.want {
			t.Fatalf("at %v: key %q, want %q", st.at, v.AccessKeyID, st.want)
		}
	}
	// A refresh made elsewhere (by Open) reaches the provider too.
	u.expire()
	if _, _, err := u.current(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.IsExpired() {
		t.Fatal("provider not expired after the Upstream refreshed")
	}
}

func TestConcurrentRefreshFetchesOnce(t *testing.T) {
	src := &scriptedSource{answers: []answer{{resp: creds("a", time.Now().Add(time.Hour))}}, block: make(chan struct{})}
	u, _ := newUpstream(t, src)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, _, err := u.current(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	// A caller that gives up while the refresh is under way is not stuck.
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, _, err := u.current(ctx)
		gaveUp <- err
	}()
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
	close(src.block)
	wg.Wait()
	if n := src.count(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	if _, err := New(nil, logging.Discard()); err == nil {
		t.Error("New without a source succeeded")
	}
	if _, err := New(Static{}, nil); err == nil {
		t.Error("New without a logger succeeded")
	}
}
