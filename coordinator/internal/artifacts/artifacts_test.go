package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/outposthq/outpost/pkg/testutil"
)

// testStore is a Store on a MinIO of its own, with its bucket made.
type testStore struct {
	*Store
	minio *testutil.MinIO
	root  *minio.Client // root credentials, to look behind the store's back
	logs  *logBuffer
}

func newTestStore(t *testing.T, mutate ...func(*Config)) *testStore {
	t.Helper()
	m := testutil.StartMinIO(t)
	cfg := DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	for _, f := range mutate {
		f(&cfg)
	}
	logs := &logBuffer{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	return &testStore{Store: s, minio: m, root: m.Client(t), logs: logs}
}

// logBuffer is a concurrency-safe log sink for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keys lists the bucket's objects under prefix.
func (ts *testStore) keys(t *testing.T, prefix string) []string {
	t.Helper()
	var keys []string
	for obj := range ts.root.ListObjects(t.Context(), ts.Bucket(), minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list %s: %v", prefix, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

// assertNoTemp fails unless no temporary upload is left, whole or in parts.
func (ts *testStore) assertNoTemp(t *testing.T) {
	t.Helper()
	if keys := ts.keys(t, uploadPrefix); len(keys) > 0 {
		t.Errorf("temporary objects left: %v", keys)
	}
	// MinIO lists multipart uploads for no prefix (or one exact key) only:
	// with uploads/ it would list none, whatever is left.
	for u := range ts.root.ListIncompleteUploads(t.Context(), ts.Bucket(), "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		if strings.HasPrefix(u.Key, uploadPrefix) {
			t.Errorf("incomplete multipart upload left: %s", u.Key)
		}
	}
}

// get reads an object with root credentials.
func (ts *testStore) get(t *testing.T, key string) []byte {
	t.Helper()
	obj, err := ts.root.GetObject(t.Context(), ts.Bucket(), key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// data returns n deterministic pseudo-random bytes.
func data(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// onlyReader hides everything but Read, as a request body does.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestUpload(t *testing.T) {
	ts := newTestStore(t)
	tests := []struct {
		name      string
		data      []byte
		knownSize bool
	}{
		{"small, size known", []byte("hello, outpost\n"), true},
		{"small, size unknown", []byte("hello again\n"), false},
		{"empty", nil, true},
		{"empty, size unknown", []byte{}, false},
		// Bigger than a part: multipart upload, then server-side copy.
		{"20 MiB, size unknown", data(20*MiB, 1), false},
		{"20 MiB, size known", data(20*MiB, 2), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := int64(-1)
			if tt.knownSize {
				size = int64(len(tt.data))
			}
			sha, n, err := ts.Upload(t.Context(), onlyReader{bytes.NewReader(tt.data)}, size)
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if want := sum(tt.data); sha != want {
				t.Errorf("sha256 = %s, want %s", sha, want)
			}
			if n != int64(len(tt.data)) {
				t.Errorf("n = %d, want %d", n, len(tt.data))
			}
			if got := ts.get(t, artifactPrefix+sha); !bytes.Equal(got, tt.data) {
				t.Errorf("stored %d bytes with sha256 %s, want the %d uploaded", len(got), sum(got), len(tt.data))
			}
			gotSize, ok, err := ts.Stat(t.Context(), sha)
			if err != nil || !ok || gotSize != n {
				t.Errorf("Stat = %d, %v, %v; want %d, true, nil", gotSize, ok, err, n)
			}
			ts.assertNoTemp(t)
		})
	}
}

func TestUploadTwice(t *testing.T) {
	ts := newTestStore(t)
	content := data(1000, 3)
	for i := range 2 {
		sha, n, err := ts.Upload(t.Context(), bytes.NewReader(content), int64(len(content)))
		if err != nil {
			t.Fatalf("upload %d: %v", i+1, err)
		}
		if sha != sum(content) || n != int64(len(content)) {
			t.Fatalf("upload %d = %s, %d", i+1, sha, n)
		}
	}
	if keys := ts.keys(t, ""); len(keys) != 1 || keys[0] != artifactPrefix+sum(content) {
		t.Errorf("bucket holds %v, want only the artifact", keys)
	}
	// The second upload found the artifact and skipped the copy.
	if c := strings.Count(ts.logs.String(), "stored artifact"); c != 1 {
		t.Errorf("copied to the content address %d times, want once; logs:\n%s", c, ts.logs)
	}
}

func TestUploadConcurrentSameBytes(t *testing.T) {
	ts := newTestStore(t)
	content := data(100_000, 4)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			sha, _, err := ts.Upload(t.Context(), bytes.NewReader(content), -1)
			if err == nil && sha != sum(content) {
				err = fmt.Errorf("sha256 %s", sha)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := ts.get(t, artifactPrefix+sum(content)); !bytes.Equal(got, content) {
		t.Errorf("stored bytes differ")
	}
	ts.assertNoTemp(t)
}

// failingReader gives n bytes, then fails.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestUploadFails(t *testing.T) {
	ts := newTestStore(t, func(c *Config) { c.MaxSize = 18 * MiB })
	boom := errors.New("connection reset by admin")
	big := data(20*MiB, 5)
	tests := []struct {
		name string
		r    io.Reader
		size int64
		// check inspects the error.
		check func(t *testing.T, err error)
	}{
		{
			name:  "reader fails at once",
			r:     &failingReader{err: boom},
			size:  -1,
			check: wantIs(boom),
		},
		{
			name:  "reader fails in the first part",
			r:     &failingReader{r: bytes.NewReader(big), n: 1000, err: boom},
			size:  -1,
			check: wantIs(boom),
		},
		{
			name:  "reader fails in the second part",
			r:     &failingReader{r: bytes.NewReader(big), n: 17 * MiB, err: boom},
			size:  -1,
			check: wantIs(boom),
		},
		{
			name:  "reader fails, size known",
			r:     &failingReader{r: bytes.NewReader(big), n: 17 * MiB, err: boom},
			size:  18 * MiB,
			check: wantIs(boom),
		},
		{
			name:  "too large, size known",
			r:     bytes.NewReader(big),
			size:  int64(len(big)),
			check: wantTooLarge(18 * MiB),
		},
		{
			name:  "too large, size unknown",
			r:     onlyReader{bytes.NewReader(big)},
			size:  -1,
			check: wantTooLarge(18 * MiB),
		},
		{
			name:  "body shorter than announced",
			r:     onlyReader{bytes.NewReader(big[:100])},
			size:  200,
			check: wantContains("ended"),
		},
		{
			name:  "body longer than announced",
			r:     onlyReader{bytes.NewReader(big[:300])},
			size:  200,
			check: wantContains("longer than the 200 bytes announced"),
		},
		{
			name:  "negative size",
			r:     bytes.NewReader(nil),
			size:  -2,
			check: wantContains("size -2 is not valid"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sha, n, err := ts.Upload(t.Context(), tt.r, tt.size)
			if err == nil {
				t.Fatalf("Upload = %s, %d; want an error", sha, n)
			}
			tt.check(t, err)
			ts.assertNoTemp(t)
			if keys := ts.keys(t, artifactPrefix); len(keys) > 0 {
				t.Errorf("a failed upload left artifacts: %v", keys)
			}
		})
	}
	t.Run("exactly the maximum size", func(t *testing.T) {
		_, n, err := ts.Upload(t.Context(), onlyReader{bytes.NewReader(big[:18*MiB])}, -1)
		if err != nil || n != 18*MiB {
			t.Fatalf("Upload = %d, %v; want %d bytes stored", n, err, 18*MiB)
		}
	})
}

func TestUploadCancelled(t *testing.T) {
	ts := newTestStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	// Cancel once the first part has been read, while the body still flows.
	r := &cancellingReader{r: bytes.NewReader(data(40*MiB, 6)), after: 17 * MiB, cancel: cancel}
	_, _, err := ts.Upload(ctx, r, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Upload = %v; want context.Canceled", err)
	}
	ts.assertNoTemp(t)
}

type cancellingReader struct {
	r      io.Reader
	n      int
	after  int
	cancel func()
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("error %v; want it to wrap %v", err, target)
		}
	}
}

func wantTooLarge(max int64) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Max != max {
			t.Errorf("error %v; want *TooLargeError with Max %d", err, max)
		}
	}
}

func wantContains(s string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// Remove takes an artifact's bytes and nothing else; removing them again
// is no error and says they were not there.
func TestRemove(t *testing.T) {
	ts := newTestStore(t)
	keep, gone := data(1000, 5), data(2000, 6)
	for _, b := range [][]byte{keep, gone} {
		if _, _, err := ts.Upload(t.Context(), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{true, false} {
		existed, err := ts.Remove(t.Context(), sum(gone))
		if err != nil || existed != want {
			t.Fatalf("Remove #%d = %v, %v; want %v, nil", i+1, existed, err, want)
		}
	}
	if keys := ts.keys(t, ""); len(keys) != 1 || keys[0] != artifactPrefix+sum(keep) {
		t.Errorf("bucket holds %v, want only %s", keys, sum(keep))
	}
}

func TestStatMissing(t *testing.T) {
	ts := newTestStore(t)
	size, ok, err := ts.Stat(t.Context(), sum([]byte("never uploaded")))
	if err != nil || ok || size != 0 {
		t.Fatalf("Stat = %d, %v, %v; want 0, false, nil", size, ok, err)
	}
}

func TestMalformedHash(t *testing.T) {
	ts := newTestStore(t)
	// A temporary upload exists, to be sure no hash can reach it.
	if _, err := ts.root.PutObject(t.Context(), ts.Bucket(), uploadPrefix+"x", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	good := sum([]byte("x"))
	for _, h := range []string{
		"",
		"../uploads/x",
		"../" + uploadPrefix + strings.Repeat("a", 61),
		strings.ToUpper(good),
		good[:63],
		good + "0",
		"sha256:" + good,
		good[:62] + "g0",
		good[:63] + "/",
	} {
		t.Run(h, func(t *testing.T) {
			if _, _, err := ts.Stat(t.Context(), h); !errors.Is(err, ErrInvalidSHA256) {
				t.Errorf("Stat: %v; want ErrInvalidSHA256", err)
			}
			if _, _, err := ts.Presign(t.Context(), h, time.Minute); !errors.Is(err, ErrInvalidSHA256) {
				t.Errorf("Presign: %v; want ErrInvalidSHA256", err)
			}
			if _, err := ts.Remove(t.Context(), h); !errors.Is(err, ErrInvalidSHA256) {
				t.Errorf("Remove: %v; want ErrInvalidSHA256", err)
			}
		})
	}
}

func TestPresign(t *testing.T) {
	ts := newTestStore(t)
	content := data(100_000, 7)
	sha, _, err := ts.Upload(t.Context(), bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("download", func(t *testing.T) {
		before := time.Now()
		url, expires, err := ts.Presign(t.Context(), sha, time.Hour)
		if err != nil {
			t.Fatalf("Presign: %v", err)
		}
		if d := expires.Sub(before); d < time.Hour-time.Second || d > time.Hour+time.Second {
			t.Errorf("expires in %v, want about an hour", d)
		}
		body, status := httpGet(t, url, "")
		if status != http.StatusOK || !bytes.Equal(body, content) {
			t.Fatalf("GET = %d with %d bytes; want 200 with the artifact", status, len(body))
		}
		// Agents resume downloads by range.
		body, status = httpGet(t, url, "bytes=1000-1999")
		if status != http.StatusPartialContent || !bytes.Equal(body, content[1000:2000]) {
			t.Fatalf("GET with Range = %d with %d bytes; want 206 with bytes 1000-1999", status, len(body))
		}
	})

	t.Run("only that artifact", func(t *testing.T) {
		url, _, err := ts.Presign(t.Context(), sha, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		other := strings.Replace(url, sha, sum([]byte("other")), 1)
		if _, status := httpGet(t, other, ""); status != http.StatusForbidden {
			t.Errorf("GET of another hash with the signature = %d, want 403", status)
		}
	})

	t.Run("expires", func(t *testing.T) {
		url, _, err := ts.Presign(t.Context(), sha, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			body, status := httpGet(t, url, "")
			return status == http.StatusForbidden && strings.Contains(string(body), "expired")
		}, "presigned URL still works")
	})

	t.Run("lifetime out of range", func(t *testing.T) {
		for _, ttl := range []time.Duration{0, time.Millisecond, -time.Hour, 8 * 24 * time.Hour} {
			if _, _, err := ts.Presign(t.Context(), sha, ttl); err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("Presign with %v: %v; want out of range", ttl, err)
			}
		}
	})
}

func httpGet(t *testing.T, url, rangeHeader string) ([]byte, int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return body, resp.StatusCode
}

func TestReadOnlyCredentials(t *testing.T) {
	ts := newTestStore(t)
	content := data(5000, 8)
	sha, _, err := ts.Upload(t.Context(), bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	// Something a relay has no business reading.
	if _, err := ts.root.PutObject(t.Context(), ts.Bucket(), backupPrefix+"outpost-backup-20261128T000000Z.tar.gz", strings.NewReader("keys"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.root.PutObject(t.Context(), ts.Bucket(), uploadPrefix+"in-progress", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	fs, err := ts.ReadOnlyCredentials(t.Context(), 30*time.Minute)
	if err != nil {
		t.Fatalf("ReadOnlyCredentials: %v", err)
	}
	if fs.Endpoint != ts.minio.Endpoint || fs.Bucket != DefaultBucket || fs.Secure {
		t.Errorf("answer names %s/%s (secure %v), want %s/%s", fs.Endpoint, fs.Bucket, fs.Secure, ts.minio.Endpoint, DefaultBucket)
	}
	if fs.AccessKey == ts.minio.AccessKey || fs.SecretKey == ts.minio.SecretKey || fs.SessionToken == "" {
		t.Fatalf("got the root credentials or no session token")
	}
	if exp := time.Unix(fs.ExpiresUnix, 0).Sub(before); exp < 29*time.Minute || exp > 31*time.Minute {
		t.Errorf("credentials expire in %v, want about 30m", exp)
	}

	relay, err := minio.New(fs.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(fs.AccessKey, fs.SecretKey, fs.SessionToken),
		Secure: fs.Secure,
		Region: fs.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	key := artifactPrefix + sha

	t.Run("can read an artifact", func(t *testing.T) {
		obj, err := relay.GetObject(ctx, fs.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		got, err := io.ReadAll(obj)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read %d bytes, %v; want the artifact", len(got), err)
		}
	})
	t.Run("can stat and list", func(t *testing.T) {
		if _, err := relay.StatObject(ctx, fs.Bucket, key, minio.StatObjectOptions{}); err != nil {
			t.Errorf("stat: %v", err)
		}
		// Listing is allowed under sha256/ alone, and that is enough for
		// a missing artifact to be told apart from a refusal.
		_, err := relay.StatObject(ctx, fs.Bucket, artifactPrefix+sum([]byte("missing")), minio.StatObjectOptions{})
		if code := minio.ToErrorResponse(err).Code; code != minio.NoSuchKey {
			t.Errorf("stat of a missing artifact: %v; want NoSuchKey", err)
		}
		obj, err := relay.GetObject(ctx, fs.Bucket, artifactPrefix+sum([]byte("missing")), minio.GetObjectOptions{})
		if err == nil {
			_, err = obj.Read(make([]byte, 1))
			obj.Close()
		}
		if code := minio.ToErrorResponse(err).Code; code != minio.NoSuchKey {
			t.Errorf("get of a missing artifact: %v; want NoSuchKey", err)
		}
		for o := range relay.ListObjects(ctx, fs.Bucket, minio.ListObjectsOptions{Prefix: artifactPrefix}) {
			if o.Err != nil {
				t.Errorf("list of %s: %v", artifactPrefix, o.Err)
			}
		}
	})

	// list is the listing's error, or one naming what it listed.
	list := func(opts minio.ListObjectsOptions) error {
		var listed []string
		for o := range relay.ListObjects(ctx, fs.Bucket, opts) {
			if o.Err != nil {
				return o.Err
			}
			listed = append(listed, o.Key)
		}
		if len(listed) > 0 {
			return fmt.Errorf("listed %v", listed)
		}
		return nil
	}
	denied := []struct {
		name string
		do   func() error
	}{
		{"put", func() error {
			_, err := relay.PutObject(ctx, fs.Bucket, artifactPrefix+sum([]byte("evil")), strings.NewReader("evil"), 4, minio.PutObjectOptions{})
			return err
		}},
		{"overwrite an artifact", func() error {
			_, err := relay.PutObject(ctx, fs.Bucket, key, strings.NewReader("evil"), 4, minio.PutObjectOptions{})
			return err
		}},
		{"delete", func() error {
			return relay.RemoveObject(ctx, fs.Bucket, key, minio.RemoveObjectOptions{})
		}},
		{"copy", func() error {
			_, err := relay.CopyObject(ctx, minio.CopyDestOptions{Bucket: fs.Bucket, Object: artifactPrefix + sum([]byte("copy"))}, minio.CopySrcOptions{Bucket: fs.Bucket, Object: key})
			return err
		}},
		{"read an upload in progress", func() error {
			_, err := relay.StatObject(ctx, fs.Bucket, uploadPrefix+"in-progress", minio.StatObjectOptions{})
			return err
		}},
		{"read the coordinator's backups", func() error {
			_, err := relay.StatObject(ctx, fs.Bucket, backupPrefix+"outpost-backup-20261128T000000Z.tar.gz", minio.StatObjectOptions{})
			return err
		}},
		{"list the coordinator's backups", func() error { return list(minio.ListObjectsOptions{Prefix: backupPrefix}) }},
		{"list the whole bucket", func() error { return list(minio.ListObjectsOptions{Recursive: true}) }},
		{"make a bucket", func() error {
			return relay.MakeBucket(ctx, "relay-bucket", minio.MakeBucketOptions{})
		}},
	}
	for _, tt := range denied {
		t.Run("cannot "+tt.name, func(t *testing.T) {
			err := tt.do()
			if code := minio.ToErrorResponse(err).Code; code != minio.AccessDenied {
				t.Errorf("got %v; want AccessDenied", err)
			}
		})
	}
	// Nothing a denied call tried has happened.
	if got := ts.get(t, key); !bytes.Equal(got, content) {
		t.Errorf("the artifact changed")
	}
	if keys := ts.keys(t, artifactPrefix); len(keys) != 1 {
		t.Errorf("artifacts are now %v, want only %s", keys, key)
	}

	t.Run("lifetime out of range", func(t *testing.T) {
		for _, ttl := range []time.Duration{time.Minute, 13 * time.Hour} {
			if _, err := ts.ReadOnlyCredentials(ctx, ttl); err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("ReadOnlyCredentials with %v: %v; want out of range", ttl, err)
			}
		}
	})
}

func TestEnsureBucket(t *testing.T) {
	ts := newTestStore(t, func(c *Config) { c.Bucket = "fresh-bucket" })
	// Idempotent: the bucket is there now.
	if err := ts.EnsureBucket(t.Context()); err != nil {
		t.Fatalf("second EnsureBucket: %v", err)
	}
	rules, err := ts.root.GetBucketLifecycle(t.Context(), "fresh-bucket")
	if err != nil {
		t.Fatalf("lifecycle of the created bucket: %v", err)
	}
	if len(rules.Rules) != 1 || rules.Rules[0].RuleFilter.Prefix != uploadPrefix || rules.Rules[0].Expiration.Days != 1 {
		t.Errorf("lifecycle rules %+v; want uploads/ to expire after a day", rules.Rules)
	}
}

func TestEnsureBucketUnreachable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = "127.0.0.1:1", "a", "b"
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.EnsureBucket(ctx); err == nil || !strings.Contains(err.Error(), "check bucket outpost-artifacts on 127.0.0.1:1") {
		t.Fatalf("EnsureBucket = %v; want it to say what it was doing", err)
	}
}

// A real MinIO refusing a wrong secret is told apart from one that cannot
// be reached (which the coordinator waits for).
func TestEnsureBucketWithWrongCredentials(t *testing.T) {
	m := testutil.StartMinIO(t)
	cfg := DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = m.Endpoint, m.AccessKey, "not-the-secret"
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = s.EnsureBucket(t.Context())
	if err == nil || !CredentialsRefused(err) {
		t.Fatalf("EnsureBucket with a wrong secret = %v; want refused credentials", err)
	}
	cfg.Endpoint = "127.0.0.1:1"
	if s, err = New(cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.EnsureBucket(ctx); err == nil || CredentialsRefused(err) {
		t.Fatalf("EnsureBucket of nothing = %v; want an error that is not refused credentials", err)
	}
}
