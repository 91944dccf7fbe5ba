// Package cache is the relay's on-disk, content-addressed pull-through cache
// of artifacts. An artifact is named by the SHA-256 of its bytes; a miss is
// fetched once from the upstream (the file server), hashed on the way, and
// enters the cache only after its hash (and size, when the upstream states
// one) has been checked. Nothing the upstream says is trusted.
//
// Clients need not wait for a whole fetch: Open streams an artifact from the
// growing temp file while it is fetched, holding back its last byte until the
// hash has been checked and cutting the stream with an error if it fails, so
// a client never receives a complete copy of bad bytes. Fetches resume by
// range after a broken upstream connection, read large objects in parallel
// ranges, and can be held to a rate (the WAN leg). Objects, and the partial
// fetches kept to resume, are evicted least recently used first when the
// cache outgrows its cap, except those pinned (named by the office's
// policy), those whose readers have yet to open them, and partials a fetch
// uses. An unpinned artifact larger than the cap leaves beside the pinned
// ones is served but not kept: it evicts nothing, and goes first.
//
// It is not an HTTP server or a pre-stager: those are the relay's business
// and sit on top of Get and Open.
package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Upstream is where misses are fetched from: the file server, or a fake in
// tests. Open returns the artifact's bytes and their size, or -1 if the
// upstream does not say. An artifact the upstream does not have must come
// back as an error wrapping ErrNotFound.
type Upstream interface {
	Open(ctx context.Context, sha256 string) (io.ReadCloser, int64, error)
}

// RangeUpstream is an Upstream that can also read part of an artifact: n
// bytes from off, or to the end when n < 0. The size returned is the whole
// artifact's. With it, the cache resumes broken fetches and reads large
// artifacts in parallel ranges; without it, a broken fetch fails.
type RangeUpstream interface {
	OpenRange(ctx context.Context, sha256 string, off, n int64) (io.ReadCloser, int64, error)
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

// Options tune a Cache; the zero value of each field means its default.
type Options struct {
	// MaxBytes caps the bytes of objects and partial fetches on disk; 0
	// means no cap. Pinned artifacts are kept even beyond it; an unpinned
	// one larger than what the pinned ones leave of it is served, but not
	// kept (see evictLocked).
	MaxBytes int64
	// UpstreamLimit holds all upstream reads together to a rate (the WAN
	// leg); nil means unlimited.
	UpstreamLimit *rate.Limiter
	// ParallelMin is the size from which an artifact is read as Chunk-sized
	// ranges, Parallel at once, taken in order so that the readable prefix
	// grows at nearly the full rate (defaults 64 MiB, 4 MiB, 4). All need
	// a RangeUpstream.
	ParallelMin int64
	Parallel    int
	Chunk       int64
	// StreamMin is the size up to which Open waits for the whole fetch,
	// so that a small artifact that fails verification gets a clean error
	// rather than a cut stream (default 1 MiB).
	StreamMin int64
	// Retries is how many times one range is resumed after its upstream
	// connection broke (default 5), RetryWait the first pause (default
	// 200ms, doubling).
	Retries   int
	RetryWait time.Duration
	// StallTimeout is how long one upstream read may bring no byte before
	// its connection is given up and the range resumed (default 1
	// minute). TCP never ends a connection whose server stops sending but
	// still answers, and a pinned or detached fetch is not cancelled by
	// its readers leaving: it would hold every client of the artifact.
	StallTimeout time.Duration
	// FreeSpace reports how many bytes can still be written on the file
	// system that holds dir; -1 (or an error) means it cannot tell, and
	// fetches then start unchecked. Default: statfs where there is one.
	FreeSpace func(dir string) (int64, error)
	// Detached is how many fetches Detach may have running with no reader
	// at once (default 4): each may cost a whole artifact of WAN.
	Detached int
}

func (o Options) withDefaults() Options {
	if o.ParallelMin <= 0 {
		o.ParallelMin = 64 << 20
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Chunk <= 0 {
		o.Chunk = 4 << 20
	}
	if o.StreamMin <= 0 {
		o.StreamMin = 1 << 20
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.RetryWait <= 0 {
		o.RetryWait = 200 * time.Millisecond
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = time.Minute
	}
	if o.FreeSpace == nil {
		o.FreeSpace = diskFree
	}
	if o.Detached <= 0 {
		o.Detached = 4
	}
	return o
}

// Cache is safe for concurrent use.
type Cache struct {
	dir     string
	up      Upstream
	opts    Options
	logger  *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	flights  map[string]*flight
	index    map[string]*entry        // objects on disk
	stored   int64                    // bytes of index
	partials map[string]*partialEntry // partial fetches that no fetch uses
	held     int64                    // bytes of partials
	seq      uint64                   // recency clock, of objects and partials
	pinned   map[string]bool
	expected map[string]int64 // sizes the office's policy states
	// fullLogged holds the artifacts whose last fetch failed for a full
	// disk, so that the same failure again is not a new warning.
	fullLogged map[string]bool
	detached   int            // fetches that Detach keeps running
	wg         sync.WaitGroup // fetches still running
}

// entry is an object on disk, for eviction.
type entry struct {
	size int64
	used uint64 // seq at last use
}

// New opens the cache in dir, creating it if needed. Temp files left by an
// earlier process are removed, except partial fetches that can resume, and
// complete objects are kept; files that
// cannot be objects (wrong name or place) are removed. It starts nothing,
// and evicts nothing: which objects are pinned is not known yet (the
// relay learns it from the office's policy), so a cache over its cap gets
// under it at the first SetPinned, or when a fetch needs room.
func New(dir string, up Upstream, logger *slog.Logger, reg prometheus.Registerer, opts ...Options) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("cache: no directory given")
	}
	if up == nil {
		return nil, errors.New("cache: no upstream given")
	}
	if logger == nil {
		return nil, errors.New("cache: no logger given")
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("cache: max bytes %d: must not be negative", o.MaxBytes)
	}
	c := &Cache{
		dir:      dir,
		up:       up,
		opts:     o.withDefaults(),
		logger:   logger.With("component", "cache"),
		flights:  make(map[string]*flight),
		index:    make(map[string]*entry),
		partials: make(map[string]*partialEntry),
		pinned:   make(map[string]bool),

		fullLogged: make(map[string]bool),
	}
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.metrics = m
	m.capacity.Set(float64(o.MaxBytes))
	if err := c.recover(); err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", dir, err)
	}
	return c, nil
}

// recover prepares the directory after a start or a crash, and rebuilds the
// recency order from the objects' modification times (a hit touches them).
func (c *Cache) recover() error {
	for _, d := range []string{c.dir, filepath.Join(c.dir, objectsDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	tmp := filepath.Join(c.dir, tempDir)
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return err
	}
	kept, err := c.keepPartials(tmp)
	if err != nil {
		return fmt.Errorf("clear leftover temp files: %w", err)
	}

	type found struct {
		hash    string
		size    int64
		mtime   time.Time
		partial *partialEntry
	}
	var all []found
	for _, p := range kept {
		all = append(all, found{hash: p.hash, mtime: p.mtime, partial: &partialEntry{held: p.held, size: p.size}})
	}
	root := filepath.Join(c.dir, objectsDir)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
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
		all = append(all, found{hash: name, size: fi.Size(), mtime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return err
	}
	// One order for objects and partials: a partial was last used when
	// its fetch last wrote to it.
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	c.mu.Lock()
	for _, f := range all {
		c.seq++
		if p := f.partial; p != nil {
			p.used = c.seq
			c.partials[f.hash] = p
			c.held += p.held
			continue
		}
		c.index[f.hash] = &entry{size: f.size, used: c.seq}
		c.stored += f.size
	}
	c.updateGaugesLocked()
	stored, held, objects := c.stored, c.held, len(c.index)
	c.mu.Unlock()
	log := c.logger.With("dir", c.dir, "objects", objects, "bytes", stored, "partial_bytes", held,
		"max_bytes", c.opts.MaxBytes)
	if c.opts.MaxBytes > 0 && stored+held > c.opts.MaxBytes {
		// Evicting now could delete what the office's policy pins, only
		// to fetch it again over the WAN.
		log.Info("cache opened over its cap; evicting once the pinned artifacts are known or a fetch needs room")
	} else {
		log.Info("cache opened")
	}
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

// Has reports whether the artifact is complete on disk.
func (c *Cache) Has(hash string) bool {
	if ValidateHash(hash) != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.index[hash]
	return ok
}

// Get returns the artifact named by hash, complete and verified, opened for
// reading, and its size. On a miss it is fetched from the upstream first;
// concurrent Gets and Opens for the same artifact share one fetch, and a Get
// whose ctx ends leaves the fetch running for the others (it is cancelled
// only when every waiter has left). The caller closes the file.
func (c *Cache) Get(ctx context.Context, hash string) (*os.File, int64, error) {
	if err := ValidateHash(hash); err != nil {
		return nil, 0, err
	}
	if f, size, err := c.openHit(hash); err == nil {
		return f, size, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	c.metrics.misses.Inc()

	fl, err := c.join(ctx, hash)
	if err != nil {
		return nil, 0, err
	}
	if fl.file != nil { // completed between the miss and the join
		return fl.file, fl.size, nil
	}
	// Leaving only once the object is open keeps it from being evicted
	// in between (see evictLocked).
	defer c.leave(hash, fl)
	select {
	case <-fl.done:
	case <-ctx.Done():
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

// Object is an artifact opened by Open: a complete file, or the stream of a
// fetch in progress.
type Object interface {
	io.ReadSeekCloser
	// Size is the artifact's length in bytes.
	Size() int64
	// Hit reports whether the artifact was complete on disk at Open.
	Hit() bool
}

// Open returns the artifact named by hash for reading. A hit is the file on
// disk. On a miss it joins (or starts) the fetch and returns as soon as the
// upstream has stated the size: reads then follow the fetch, block while it
// is behind, return the last byte only once the hash has been checked, and
// fail if the fetch fails, so that a reader never sees a complete copy of
// bytes that did not verify. Closing the Object leaves the fetch; the last
// to leave cancels it. An upstream that states no size makes Open wait for
// the whole fetch.
func (c *Cache) Open(ctx context.Context, hash string) (Object, error) {
	if err := ValidateHash(hash); err != nil {
		return nil, err
	}
	if f, size, err := c.openHit(hash); err == nil {
		return &fileObject{File: f, size: size}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	c.metrics.misses.Inc()
	fl, err := c.join(ctx, hash)
	if err != nil {
		return nil, err
	}
	if fl.file != nil { // completed between the miss and the join
		return &fileObject{File: fl.file, size: fl.size, fetched: true}, nil
	}
	select {
	case <-fl.sized:
		if fl.size <= c.opts.StreamMin {
			select {
			case <-fl.done:
			case <-ctx.Done():
				c.leave(hash, fl)
				return nil, fmt.Errorf("open %s: %w", hash, ctx.Err())
			}
		}
	case <-fl.done:
	case <-ctx.Done():
		c.leave(hash, fl)
		return nil, fmt.Errorf("open %s: %w", hash, ctx.Err())
	}
	r, err := fl.reader(c, ctx, false)
	if err != nil {
		c.leave(hash, fl)
		return nil, err
	}
	if r == nil { // the fetch completed already
		// Held for this waiter until it leaves: open first.
		f, size, err := c.open(hash)
		c.leave(hash, fl)
		if err != nil {
			return nil, fmt.Errorf("open %s after fetch: %w", hash, err)
		}
		return &fileObject{File: f, size: size, fetched: true}, nil
	}
	r.onClose = func() { c.leave(hash, fl) }
	return r, nil
}

type fileObject struct {
	*os.File
	size    int64
	fetched bool // by this Open: a miss
}

func (f *fileObject) Size() int64 { return f.size }

// OSFile is the open file, for sendfile.
func (f *fileObject) OSFile() *os.File { return f.File }
func (f *fileObject) Hit() bool        { return !f.fetched }

// openHit opens a cached object and marks it used; a miss is an error
// wrapping fs.ErrNotExist.
func (c *Cache) openHit(hash string) (*os.File, int64, error) {
	f, size, err := c.open(hash)
	if err != nil {
		return nil, 0, err
	}
	c.metrics.hits.Inc()
	c.touch(hash)
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
// none is running. A fetch that every waiter left is stopping: joining it
// would give a stream that is cut a moment later, so the caller waits for
// it to end and starts the next, which resumes from the bytes it kept.
// The caller leaves once it is done with the flight (for a completed one:
// once it has opened the object). If the object was completed meanwhile
// the flight returned is a finished one carrying the open file.
func (c *Cache) join(ctx context.Context, hash string) (*flight, error) {
	for {
		c.mu.Lock()
		fl, ok := c.flights[hash]
		if ok && fl.abandoned {
			c.mu.Unlock()
			select {
			case <-fl.stopped:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("open %s: %w", hash, ctx.Err())
			}
		}
		if !ok {
			// A fetch may have completed between the caller's miss and now;
			// starting another would read the upstream twice. Opened under
			// the lock, so that no eviction comes in between.
			if e, ok := c.index[hash]; ok {
				f, size, err := c.open(hash)
				if err == nil {
					c.seq++
					e.used = c.seq
					c.mu.Unlock()
					return doneFlight(f, size), nil
				}
				if !errors.Is(err, fs.ErrNotExist) {
					c.mu.Unlock()
					return nil, err
				}
				// Removed behind the cache's back: fetch it again.
				delete(c.index, hash)
				c.stored -= e.size
				c.updateGaugesLocked()
			}
			// The fetch serves every waiter, so it must not end with the
			// first one's request; it keeps ctx's values (trace ids) only.
			fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			fl = newFlight(hash, cancel)
			c.flights[hash] = fl
			// The fetch resumes from (or replaces) what an earlier one
			// left: its reservation counts those bytes from now on, and
			// the partial is not a victim while the flight is registered.
			c.takePartialLocked(hash)
			c.metrics.fetches.Inc()
			c.wg.Add(1)
			go c.run(fctx, fl)
		}
		fl.waiters++
		c.mu.Unlock()
		return fl, nil
	}
}

// leave unregisters a waiter. The last one out cancels a fetch still
// running, since nobody would use its result, unless the artifact is
// pinned or the fetch detached; it lets go of a completed one's object,
// which the waiters have open now (see run).
func (c *Cache) leave(hash string, fl *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl.cancel == nil { // a doneFlight: nothing shared
		return
	}
	fl.waiters--
	if fl.waiters > 0 {
		return
	}
	if fl.ended {
		c.dropFlightLocked(fl)
		return
	}
	select {
	case <-fl.done:
		return // run lets go of it
	default:
	}
	if !c.pinned[hash] && !fl.detached {
		c.logger.Debug("every waiter left, cancelling fetch", "sha256", hash)
		fl.abandoned = true
		fl.cancel()
	}
}

// Detach has the fetch of hash in progress go on to its end even once
// every reader has left, as a pinned artifact's does: what one request
// started (a HEAD, which reads no bytes) is then cached rather than
// thrown away. At most Options.Detached fetches are detached at once;
// beyond that, with no fetch of hash running, or for an artifact the cap
// cannot keep (it would be dropped at the end), it returns false and the
// fetch ends with its readers. Stop cancels detached fetches too.
func (c *Cache) Detach(hash string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl, ok := c.flights[hash]
	if !ok || fl.abandoned || fl.ended {
		return false
	}
	if fl.detached {
		return true
	}
	if fl.reservedBytes > 0 && c.cannotKeepLocked(hash, fl.reservedBytes, c.roomLocked()) {
		// Its whole artifact would cross the WAN to be dropped at the end.
		c.logger.Debug("not detaching a fetch whose artifact the cap cannot keep", "sha256", hash, "bytes", fl.reservedBytes)
		return false
	}
	if c.detached >= c.opts.Detached {
		c.logger.Debug("not detaching a fetch: too many run detached already", "sha256", hash, "detached", c.detached)
		return false
	}
	fl.detached = true
	c.detached++
	return true
}

func (c *Cache) run(ctx context.Context, fl *flight) {
	defer c.wg.Done()
	err := c.fetch(ctx, fl)
	c.mu.Lock()
	fl.reservedBytes = 0
	fl.ended = true
	if fl.detached {
		fl.detached = false
		c.detached--
	}
	// A completed object stays held while waiters have still to open it
	// (the last to leave lets go); a failed fetch leaves at once, so that
	// the next caller starts afresh.
	if err != nil || fl.waiters == 0 {
		if err != nil {
			// What it kept to resume counts against the cap now, and
			// may be evicted as soon as the flight is gone.
			c.notePartialLocked(fl.hash)
		}
		c.dropFlightLocked(fl)
	}
	c.mu.Unlock()
	if err != nil {
		fl.finish(err, nil)
	}
	fl.cancel()
	close(fl.stopped)
}

// dropFlightLocked forgets an ended flight. The object it held for its
// waiters may be one the cap cannot keep (pinned objects fill it): its
// waiters have it open, and it goes now.
func (c *Cache) dropFlightLocked(fl *flight) {
	if c.flights[fl.hash] == fl {
		delete(c.flights, fl.hash)
	}
	c.evictLocked()
}

// Stop cancels every fetch in progress, pinned and detached ones too, and
// waits for them to end; what they fetched is kept to resume (see fetch).
// It is for the end of the relay: its readers have gone, and a pinned
// fetch over a slow WAN could otherwise hold the stop for hours.
func (c *Cache) Stop() {
	c.mu.Lock()
	for _, fl := range c.flights {
		if fl.ended {
			continue
		}
		fl.abandoned = true
		fl.cancel()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// Wait blocks until every fetch in progress has ended. A fetch ends when it
// completes or when all its waiters have left (a pinned or detached one
// only when it completes, or at Stop), so once the callers of Get have
// returned and the Objects are closed, Wait returns promptly.
func (c *Cache) Wait() { c.wg.Wait() }
