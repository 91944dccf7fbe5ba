// Package cache is the relay's on-disk, content-addressed pull-through cache
// of artifacts. An artifact is named by the SHA-256 of its bytes; a miss is
// fetched once from the upstream (the file server), hashed on the way, and
// enters the cache only after its hash (and size, when the upstream states
// one) has been checked. Nothing the upstream says is trusted.
//
// It is not an eviction policy, a pre-stager or an HTTP server: those are the
// relay's business and sit on top of Get.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// Upstream is where misses are fetched from: the file server, or a fake in
// tests. Open returns the artifact's bytes and their size, or -1 if the
// upstream does not say. An artifact the upstream does not have must come
// back as an error wrapping ErrNotFound.
type Upstream interface {
	Open(ctx context.Context, sha256 string) (io.ReadCloser, int64, error)
}

var (
	// ErrInvalidHash means the name given is not 64 lower-case hex digits.
	// Such a name never reaches the file system or the upstream.
	ErrInvalidHash = errors.New("invalid sha256: want 64 lower-case hex digits")
	// ErrNotFound means the upstream does not have the artifact.
	ErrNotFound = errors.New("artifact not found")
	// ErrUpstream means the upstream failed or sent bytes that did not
	// verify; the cache itself is fine.
	ErrUpstream = errors.New("file server")
	// ErrIntegrity means the upstream's bytes did not match the artifact's
	// SHA-256 or the size the upstream stated. Such errors also wrap
	// ErrUpstream.
	ErrIntegrity = errors.New("artifact failed verification")
)

// Layout under the cache directory. Objects are spread over 256 directories
// by their first two hex digits; temp files live apart so that a restart can
// drop them all without looking at names.
const (
	objectsDir = "sha256"
	tempDir    = "tmp"
)

// Cache is safe for concurrent use.
type Cache struct {
	dir     string
	up      Upstream
	logger  *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	flights map[string]*flight
	wg      sync.WaitGroup // fetches still running
}

// flight is one upstream fetch that any number of Gets wait for.
type flight struct {
	done    chan struct{} // closed when err is set
	err     error
	waiters int
	cancel  context.CancelFunc
}

// New opens the cache in dir, creating it if needed. Temp files left by an
// earlier process are removed and complete objects are kept; files that
// cannot be objects (wrong name or place) are removed. It starts nothing.
func New(dir string, up Upstream, logger *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("cache: no directory given")
	}
	if up == nil {
		return nil, errors.New("cache: no upstream given")
	}
	if logger == nil {
		return nil, errors.New("cache: no logger given")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{
		dir:     dir,
		up:      up,
		logger:  logger.With("component", "cache"),
		metrics: m,
		flights: make(map[string]*flight),
	}
	if err := c.recover(); err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", dir, err)
	}
	return c, nil
}

// recover prepares the directory after a start or a crash.
func (c *Cache) recover() error {
	for _, d := range []string{c.dir, filepath.Join(c.dir, objectsDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	tmp := filepath.Join(c.dir, tempDir)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove leftover temp files: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return err
	}

	var objects, bytes int64
	root := filepath.Join(c.dir, objectsDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if len(rel) == 2 && isHex(rel) {
				return nil
			}
			c.logger.Warn("removing a directory that does not belong in the cache", "path", path)
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			return fs.SkipDir
		}
		name := d.Name()
		if !d.Type().IsRegular() || ValidateHash(name) != nil || filepath.Dir(rel) != name[:2] {
			c.logger.Warn("removing a file that does not belong in the cache", "path", path)
			return os.Remove(path)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		objects++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		return err
	}
	c.metrics.objects.Set(float64(objects))
	c.metrics.storedBytes.Set(float64(bytes))
	c.logger.Info("cache opened", "dir", c.dir, "objects", objects, "bytes", bytes)
	return nil
}

// ValidateHash returns ErrInvalidHash unless s is exactly 64 lower-case hex
// digits, the only names the cache accepts.
func ValidateHash(s string) error {
	if len(s) != sha256.Size*2 || !isHex(s) {
		return ErrInvalidHash
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// objectPath is where the artifact named by a validated hash lives.
func (c *Cache) objectPath(hash string) string {
	return filepath.Join(c.dir, objectsDir, hash[:2], hash)
}

// Get returns the artifact named by hash, opened for reading, and its size.
// On a miss it is fetched from the upstream first; concurrent Gets for the
// same artifact share one fetch, and a Get whose ctx ends leaves the fetch
// running for the others (it is cancelled only when every waiter has left).
// The caller closes the file.
func (c *Cache) Get(ctx context.Context, hash string) (*os.File, int64, error) {
	if err := ValidateHash(hash); err != nil {
		return nil, 0, err
	}
	if f, size, err := c.open(hash); err == nil {
		c.metrics.hits.Inc()
		return f, size, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	c.metrics.misses.Inc()

	fl, err := c.join(ctx, hash)
	if err != nil {
		return nil, 0, err
	}
	select {
	case <-fl.done:
	case <-ctx.Done():
		c.leave(hash, fl)
		// The fetch may have finished in the same instant; prefer its
		// outcome so that a result is not thrown away.
		select {
		case <-fl.done:
		default:
			return nil, 0, fmt.Errorf("get %s: %w", hash, ctx.Err())
		}
	}
	if fl.err != nil {
		return nil, 0, fl.err
	}
	f, size, err := c.open(hash)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: open after fetch: %w", hash, err)
	}
	return f, size, nil
}

// open opens a cached object; a miss is an error wrapping fs.ErrNotExist.
func (c *Cache) open(hash string) (*os.File, int64, error) {
	f, err := os.Open(c.objectPath(hash))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("get %s: %w", hash, err)
	}
	return f, fi.Size(), nil
}

// join registers the caller as a waiter of the fetch of hash, starting it if
// none is running.
func (c *Cache) join(ctx context.Context, hash string) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl, ok := c.flights[hash]
	if !ok {
		// A fetch may have completed between the caller's miss and now;
		// starting another would read the upstream twice.
		if _, err := os.Stat(c.objectPath(hash)); err == nil {
			fl = &flight{done: make(chan struct{})}
			close(fl.done)
			return fl, nil
		}
		// The fetch serves every waiter, so it must not end with the
		// first one's request; it keeps ctx's values (trace ids) only.
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{done: make(chan struct{}), cancel: cancel}
		c.flights[hash] = fl
		c.metrics.fetches.Inc()
		c.wg.Add(1)
		go c.run(fctx, hash, fl)
	}
	fl.waiters++
	return fl, nil
}

// leave unregisters a waiter whose context ended; the last one out cancels
// the fetch, since nobody would use its result.
func (c *Cache) leave(hash string, fl *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl.waiters--
	if fl.waiters == 0 && fl.cancel != nil {
		c.logger.Debug("every waiter left, cancelling fetch", "sha256", hash)
		fl.cancel()
	}
}

func (c *Cache) run(ctx context.Context, hash string, fl *flight) {
	defer c.wg.Done()
	err := c.fetch(ctx, hash)
	c.mu.Lock()
	delete(c.flights, hash)
	fl.err = err
	close(fl.done)
	c.mu.Unlock()
	fl.cancel()
}

// Wait blocks until every fetch in progress has ended. A fetch ends when it
// completes or when all its waiters have left, so once the callers of Get
// have returned, Wait returns promptly.
func (c *Cache) Wait() { c.wg.Wait() }

// fetch copies the artifact from the upstream into a temp file, verifies it,
// and only then moves it into place.
func (c *Cache) fetch(ctx context.Context, hash string) (err error) {
	log := c.logger.With("sha256", hash)
	defer func() {
		if err != nil && ctx.Err() == nil {
			log.Warn("fetch failed", "err", err)
		}
	}()

	body, size, err := c.up.Open(ctx, hash)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			c.metrics.notFound.Inc()
			return fmt.Errorf("get %s: %w", hash, err)
		}
		c.metrics.upstreamErrors.Inc()
		return fmt.Errorf("get %s: %w: %w", hash, ErrUpstream, err)
	}
	defer body.Close()

	tmp, err := os.CreateTemp(filepath.Join(c.dir, tempDir), hash[:16]+"-*")
	if err != nil {
		return fmt.Errorf("get %s: create temp file: %w", hash, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // a no-op once renamed
	defer tmp.Close()

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(fileWriter{tmp}, h), &countingReader{r: body, c: c.metrics.upstreamBytes})
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return fmt.Errorf("get %s: write temp file: %w", hash, we.err)
		}
		c.metrics.upstreamErrors.Inc()
		return fmt.Errorf("get %s: %w: read after %d bytes: %w", hash, ErrUpstream, n, err)
	}
	if size >= 0 && n != size {
		c.metrics.verifyFailures.WithLabelValues("size").Inc()
		return fmt.Errorf("get %s: %w: %w: file server announced %d bytes, sent %d", hash, ErrUpstream, ErrIntegrity, size, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hash {
		c.metrics.verifyFailures.WithLabelValues("sha256").Inc()
		return fmt.Errorf("get %s: %w: %w: the %d bytes received hash to sha256 %s", hash, ErrUpstream, ErrIntegrity, n, got)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("get %s: sync temp file: %w", hash, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("get %s: close temp file: %w", hash, err)
	}
	final := c.objectPath(hash)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return fmt.Errorf("get %s: %w", hash, err)
	}
	if err := fsutil.Rename(tmpName, final); err != nil {
		return fmt.Errorf("get %s: %w", hash, err)
	}
	c.metrics.objects.Inc()
	c.metrics.storedBytes.Add(float64(n))
	log.Info("artifact cached", "bytes", n)
	return nil
}

// countingReader counts upstream bytes as they arrive, so that the metric
// moves during a long download and not only at its end.
type countingReader struct {
	r io.Reader
	c prometheus.Counter
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.c.Add(float64(n))
	return n, err
}

// fileWriter marks its errors, so that a full disk is not blamed on the
// upstream in io.Copy's single error.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
