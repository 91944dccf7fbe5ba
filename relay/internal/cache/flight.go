package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// flight is one upstream fetch that any number of Gets and Opens share.
// Its bytes go to a temp file, in one or several ranges; avail is how far
// from the start they are contiguous, which is what readers may read.
type flight struct {
	hash   string
	cancel context.CancelFunc

	// Guarded by Cache.mu.
	waiters       int
	reservedBytes int64
	evictedBytes  int64 // evicted to make room for this fetch
	abandoned     bool  // every waiter left and the fetch was cancelled: join none
	detached      bool  // goes on with no waiter (Detach)
	// ended: the fetch has returned. A completed one stays in
	// Cache.flights until its last waiter leaves, which holds its object
	// against eviction until every waiter has opened it.
	ended   bool
	stopped chan struct{} // closed once the fetch has ended

	sized chan struct{} // closed once size is known
	done  chan struct{} // closed once err is final (nil: verified, in place)
	err   error

	mu       sync.Mutex
	size     int64
	parts    []part
	avail    int64
	verified bool
	tmpName  string
	changed  chan struct{} // closed and replaced on every change
	finished bool

	written atomic.Int64 // bytes in the temp file, kept ones included

	saveMu sync.Mutex // one state save at a time

	file *os.File // a doneFlight's object, opened for its one caller
}

type part struct{ off, end, pos int64 }

func newFlight(hash string, cancel context.CancelFunc) *flight {
	return &flight{hash: hash, cancel: cancel, size: -1, sized: make(chan struct{}),
		done: make(chan struct{}), changed: make(chan struct{}), stopped: make(chan struct{})}
}

// doneFlight is a flight that already succeeded: the object is on disk, and
// f is it opened for the one caller.
func doneFlight(f *os.File, size int64) *flight {
	fl := newFlight("", nil)
	fl.file, fl.size = f, size
	fl.verified, fl.finished = true, true
	close(fl.sized)
	close(fl.done)
	return fl
}

// broadcastLocked wakes every reader waiting for a change.
func (fl *flight) broadcastLocked() {
	close(fl.changed)
	fl.changed = make(chan struct{})
}

// finish ends the flight with err; only the first call counts. On success
// commit has already moved the file into place.
func (fl *flight) finish(err error, commit func() error) error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.finished {
		return nil
	}
	if err == nil && commit != nil {
		err = commit()
	}
	fl.finished = true
	fl.err = err
	fl.verified = fl.verified || err == nil
	close(fl.done)
	fl.broadcastLocked()
	return err
}

// markVerified lets readers have the last byte: the hash has checked.
func (fl *flight) markVerified() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.verified = true
	fl.broadcastLocked()
}

func (fl *flight) setParts(size int64, parts []part, tmpName string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.size, fl.parts, fl.tmpName = size, parts, tmpName
	for _, p := range parts {
		fl.avail = p.pos
		if p.pos < p.end {
			break
		}
	}
	close(fl.sized)
	fl.broadcastLocked()
}

// progress records that part i is written up to pos.
func (fl *flight) progress(i int, pos int64) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.parts[i].pos = pos
	var avail int64
	for _, p := range fl.parts {
		avail = p.pos
		if p.pos < p.end {
			break
		}
	}
	if avail != fl.avail {
		fl.avail = avail
		fl.broadcastLocked()
	}
}

// reader opens a stream of the flight's bytes. It returns nil, nil when
// the flight has completed (the object is to be opened in place). An
// internal reader (the hasher) is not held back by verification.
func (fl *flight) reader(c *Cache, ctx context.Context, internal bool) (*streamReader, error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.finished {
		if fl.err != nil {
			return nil, fl.err
		}
		return nil, nil
	}
	f, err := os.Open(fl.tmpName)
	if err != nil {
		return nil, fmt.Errorf("open %s while it is fetched: %w", fl.hash, err)
	}
	return &streamReader{fl: fl, f: f, ctx: ctx, size: fl.size, internal: internal}, nil
}

// streamReader reads a flight's temp file as far as it is written.
type streamReader struct {
	fl       *flight
	f        *os.File
	ctx      context.Context
	size     int64
	off      int64
	internal bool
	onClose  func()
	closed   bool
	err      error // the fetch's failure, once seen
}

// Err is the fetch's failure if a Read has seen it: the stream was cut.
func (r *streamReader) Err() error { return r.err }

func (r *streamReader) Size() int64 { return r.size }
func (r *streamReader) Hit() bool   { return false }

func (r *streamReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	avail, err := r.readable()
	if err != nil {
		return 0, err
	}
	n, err := r.f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

// SendTo writes the next n bytes to w as they become readable, handing the
// file to w's ReadFrom so that a TCP connection sends them by sendfile.
func (r *streamReader) SendTo(w io.Writer, n int64) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return io.Copy(w, io.LimitReader(r, n))
	}
	var sent int64
	for sent < n {
		avail, err := r.readable()
		if err != nil {
			return sent, err
		}
		k := min(avail, n-sent)
		if _, err := r.f.Seek(r.off, io.SeekStart); err != nil {
			return sent, err
		}
		m, err := rf.ReadFrom(&io.LimitedReader{R: r.f, N: k})
		r.off += m
		sent += m
		if err != nil {
			return sent, err
		}
		if m < k {
			return sent, io.ErrUnexpectedEOF
		}
	}
	return sent, nil
}

// readable waits until bytes can be read at the reader's offset and says
// how many; io.EOF at the verified end.
func (r *streamReader) readable() (int64, error) {
	for {
		fl := r.fl
		fl.mu.Lock()
		// A failure after verification (the cache could not keep the
		// file) does not make the bytes wrong: readers go on.
		if fl.finished && fl.err != nil && !fl.verified {
			r.err = fl.err
			fl.mu.Unlock()
			return 0, r.err
		}
		if r.off >= r.size && (fl.verified || r.internal) {
			fl.mu.Unlock()
			return 0, io.EOF
		}
		limit := fl.avail
		if !fl.verified && !r.internal {
			limit = min(limit, r.size-1)
		}
		ch := fl.changed
		fl.mu.Unlock()
		if r.off < limit {
			return limit - r.off, nil
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *streamReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = offset
	return offset, nil
}

func (r *streamReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.onClose != nil {
		r.onClose()
	}
	return r.f.Close()
}

// readBuf is the size of one upstream read and temp-file write.
const readBuf = 256 << 10

// fetch copies the artifact from the upstream into a temp file, verifies it,
// and only then moves it into place; readers follow it meanwhile.
func (c *Cache) fetch(ctx context.Context, fl *flight) (err error) {
	hash := fl.hash
	log := c.logger.With("sha256", hash)
	var tmpName string
	_, ranged := c.up.(RangeUpstream)
	defer func() {
		if err == nil {
			return
		}
		// What stopped short of the end is kept to resume, unless its
		// bytes are known to be wrong or cannot be resumed; settled
		// before anyone hears of the failure, so that a retry finds it.
		defer fl.finish(err, nil)
		var we *writeError
		// A full disk keeps what arrived: the bytes crossed the WAN once,
		// and the next fetch resumes from them when there is room. Should
		// another artifact need the room first, makeRoomLocked drops them.
		full := errors.Is(err, ErrDiskFull) || isDiskFull(err)
		resumable := ranged && tmpName != "" && fl.size > 0 && !errors.Is(err, ErrIntegrity) &&
			!errors.Is(err, ErrNotFound) &&
			(full || !errors.As(err, &we) && (ctx.Err() != nil || errors.Is(err, ErrUpstream)))
		switch {
		case resumable && full && fl.written.Load() == 0:
			c.dropPartial(hash) // nothing to keep
		case resumable && c.saveState(fl) == nil:
			log.Info("fetch stopped; its bytes are kept to resume", "err", err)
		case tmpName != "":
			c.dropPartial(hash)
		}
		if ctx.Err() == nil {
			if c.repeatedFull(hash, full) {
				log.Debug("fetch failed again", "err", err)
			} else {
				log.Warn("fetch failed", "err", err)
			}
		}
	}()

	if ranged {
		if tmp, parts, size, ok := c.loadPartial(hash); ok {
			defer tmp.Close()
			var have int64
			for _, p := range parts {
				have += p.pos - p.off
			}
			fl.written.Store(have)
			// The rest must fit; if it does not, the partial stays as it
			// is for when there is room.
			if err := c.reserve(fl, size); err != nil {
				return err
			}
			tmpName = tmp.Name()
			log.Info("resuming a fetch an earlier run left", "bytes_kept", have, "size", size)
			c.metrics.resumes.Inc()
			n, sum, err := c.copySized(ctx, fl, tmp, nil, nil, size, parts)
			if err != nil {
				return err
			}
			return c.commit(ctx, fl, tmp, n, sum)
		}
	}

	// The office's policy states the size of the artifacts it names: if
	// one cannot fit, not a byte of it is read.
	c.mu.Lock()
	expected := c.expected[hash]
	c.mu.Unlock()
	if expected > 0 {
		if err := c.reserve(fl, expected); err != nil {
			return err
		}
	}

	// With ranges, the first request asks for the first chunk only, so
	// that the rest can be spread over parallel ranges without dropping a
	// connection that still carries bytes (they would cross the WAN for
	// nothing).
	var body io.ReadCloser
	var size int64
	// The request has a context of its own, so that a read of it that
	// stalls can be given up without the fetch (see stallReader).
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	if ru, ok := c.up.(RangeUpstream); ok && c.opts.Parallel > 1 {
		body, size, err = ru.OpenRange(bctx, hash, 0, c.opts.Chunk)
	} else {
		body, size, err = c.up.Open(bctx, hash)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			c.metrics.notFound.Inc()
			return fmt.Errorf("get %s: %w", hash, err)
		}
		c.metrics.upstreamErrors.Inc()
		return fmt.Errorf("get %s: %w: %w", hash, ErrUpstream, err)
	}
	defer func() {
		if body != nil {
			body.Close()
		}
	}()
	// The upstream has stated the size, and sent no more than its headers
	// yet: an artifact that cannot fit stops here.
	if size >= 0 {
		if err := c.reserve(fl, size); err != nil {
			return err
		}
	}

	tmp, err := os.OpenFile(c.partialPath(hash), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("get %s: create temp file: %w", hash, err)
	}
	os.Remove(c.statePath(hash)) // stale
	tmpName = tmp.Name()
	defer tmp.Close()

	var n int64
	var sum []byte
	if size < 0 {
		n, sum, err = c.copyUnsized(ctx, fl, tmp, body, bcancel)
	} else {
		n, sum, err = c.copySized(ctx, fl, tmp, body, bcancel, size, nil)
		body = nil // closed by copySized
	}
	if err != nil {
		return err
	}
	return c.commit(ctx, fl, tmp, n, sum)
}

// commit checks the hash of a complete temp file and moves it into place.
func (c *Cache) commit(ctx context.Context, fl *flight, tmp *os.File, n int64, sum []byte) error {
	hash, tmpName := fl.hash, tmp.Name()
	log := c.logger.With("sha256", hash)
	if got := hex.EncodeToString(sum); got != hash {
		c.metrics.verifyFailures.WithLabelValues("sha256").Inc()
		return fmt.Errorf("get %s: %w: %w: the %d bytes received hash to sha256 %s", hash, ErrUpstream, ErrIntegrity, n, got)
	}
	// The bytes are right: readers may have the last one now, while the
	// file is made durable and moved into place.
	fl.markVerified()
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
	// The rename happens under the flight's lock, so that a reader opens
	// either the temp file before it or the object after it.
	// The index learns of the object before anyone is told it is done.
	commit := func() error {
		if err := fsutil.Rename(tmpName, final); err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seq++
		c.index[hash] = &entry{size: n, used: c.seq}
		c.stored += n
		fl.reservedBytes = 0
		delete(c.fullLogged, hash)
		c.evictLocked()
		c.updateGaugesLocked()
		return nil
	}
	if err := fl.finish(nil, commit); err != nil {
		return fmt.Errorf("get %s: %w", hash, err)
	}
	os.Remove(c.statePath(hash))
	log.Info("artifact cached", "bytes", n)
	return nil
}

// copyUnsized reads an artifact of unstated size in one stream; nobody can
// read along, since no length can be promised.
func (c *Cache) copyUnsized(ctx context.Context, fl *flight, tmp *os.File, body io.Reader, cancel context.CancelFunc) (int64, []byte, error) {
	hash := fl.hash
	h := sha256.New()
	src := &limitedReader{ctx: ctx, r: &stallReader{r: body, d: c.opts.StallTimeout, cancel: cancel}, lim: c.opts.UpstreamLimit, count: c.metrics.upstreamBytes.Add}
	n, err := io.Copy(io.MultiWriter(fileWriter{c: c, fl: fl, f: tmp}, h), src)
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			var df *DiskFullError
			if errors.As(we.err, &df) {
				return n, nil, df
			}
			return n, nil, fmt.Errorf("get %s: write temp file: %w", hash, we.err)
		}
		c.metrics.upstreamErrors.Inc()
		return n, nil, fmt.Errorf("get %s: %w: read after %d bytes: %w", hash, ErrUpstream, n, err)
	}
	return n, h.Sum(nil), nil
}

// plan splits an artifact into the ranges to fetch and says how many run
// at once. The first is what the first request asked for: a chunk when the
// upstream takes ranges and Parallel > 1, else everything.
func (c *Cache) plan(size int64) ([]part, int) {
	_, ranged := c.up.(RangeUpstream)
	if !ranged || c.opts.Parallel <= 1 || size <= c.opts.Chunk {
		return []part{{0, size, 0}}, 1
	}
	parts := []part{{0, c.opts.Chunk, 0}}
	if size < c.opts.ParallelMin {
		return append(parts, part{c.opts.Chunk, size, c.opts.Chunk}), 1
	}
	for off := c.opts.Chunk; off < size; off += c.opts.Chunk {
		end := min(off+c.opts.Chunk, size)
		parts = append(parts, part{off, end, off})
	}
	return parts, c.opts.Parallel
}

// copySized fetches an artifact of stated size, already reserved
// (Cache.reserve), in one or more ranges, some at once, taken in order;
// each resumes by range when its connection breaks. The artifact is hashed
// in order as it becomes contiguous. It closes body; cancel ends its
// request.
func (c *Cache) copySized(ctx context.Context, fl *flight, tmp *os.File, body io.ReadCloser, cancel context.CancelFunc, size int64, parts []part) (int64, []byte, error) {
	hash := fl.hash
	workers := 1
	if parts == nil {
		parts, workers = c.plan(size)
	} else if len(parts) > 1 {
		workers = c.opts.Parallel
	}
	if len(parts) > 1 {
		if err := tmp.Truncate(size); err != nil {
			if body != nil {
				body.Close()
			}
			return 0, nil, fmt.Errorf("get %s: size temp file: %w", hash, err)
		}
	}
	fl.setParts(size, parts, tmp.Name())
	if _, ranged := c.up.(RangeUpstream); ranged {
		// A state from the start, so that a disk that fills up has one
		// to overwrite (see saveState).
		if err := c.saveState(fl); err != nil {
			c.logger.Debug("save fetch state", "sha256", hash, "err", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	next.Store(1)
	// The first part always has its body; the others open their range.
	g.Go(func() error {
		if err := c.fetchPart(gctx, fl, tmp, 0, parts[0], body, cancel); err != nil {
			return err
		}
		return c.work(gctx, fl, tmp, parts, &next)
	})
	for range workers - 1 {
		g.Go(func() error { return c.work(gctx, fl, tmp, parts, &next) })
	}
	var sum []byte
	g.Go(func() error {
		r, err := fl.reader(c, gctx, true)
		if err != nil || r == nil {
			return err
		}
		defer r.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, r, make([]byte, readBuf)); err != nil {
			return err
		}
		sum = h.Sum(nil)
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, nil, err
	}
	return size, sum, nil
}

// work fetches the next parts in order until none is left.
func (c *Cache) work(ctx context.Context, fl *flight, tmp *os.File, parts []part, next *atomic.Int64) error {
	for {
		i := int(next.Add(1) - 1)
		if i >= len(parts) {
			return nil
		}
		if err := c.fetchPart(ctx, fl, tmp, i, parts[i], nil, nil); err != nil {
			return err
		}
	}
}

// fetchPart fills part i of the temp file, starting from body if given
// (cancel ends its request) and resuming by range after a broken or
// stalled connection.
func (c *Cache) fetchPart(ctx context.Context, fl *flight, tmp *os.File, i int, p part, body io.ReadCloser, cancel context.CancelFunc) error {
	hash, size := fl.hash, fl.size
	last := p.end == size
	ru, ranged := c.up.(RangeUpstream)
	pos := p.pos
	if pos >= p.end && body == nil {
		return nil // done by an earlier run
	}
	failures := 0
	wait := c.opts.RetryWait
	var lastErr error
	for {
		if body == nil {
			actx, acancel := context.WithCancel(ctx)
			rc, total, err := ru.OpenRange(actx, hash, pos, p.end-pos)
			if err == nil && total != size {
				rc.Close()
				acancel()
				c.metrics.verifyFailures.WithLabelValues("size").Inc()
				return fmt.Errorf("get %s: %w: %w: file server announced %d bytes, then %d", hash, ErrUpstream, ErrIntegrity, size, total)
			}
			if err != nil {
				acancel()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, ErrNotFound) {
					c.metrics.notFound.Inc()
					return fmt.Errorf("get %s: range at %d: %w", hash, pos, err)
				}
				lastErr = err
				goto retry
			}
			body, cancel = rc, acancel
		}
		{
			src := &stallReader{r: body, d: c.opts.StallTimeout, cancel: cancel}
			n, err := c.copyRange(ctx, fl, tmp, i, src, pos, p.end)
			pos += n
			if err == nil && last {
				// More than announced is as wrong as less.
				extra, _ := io.Copy(io.Discard, io.LimitReader(src, 64<<20))
				if extra > 0 {
					body.Close()
					cancel()
					c.metrics.verifyFailures.WithLabelValues("size").Inc()
					return fmt.Errorf("get %s: %w: %w: file server announced %d bytes, sent %d", hash, ErrUpstream, ErrIntegrity, size, size+extra)
				}
			}
			body.Close()
			cancel()
			body = nil
			switch {
			case err == nil:
				return nil
			case errors.Is(err, io.EOF):
				c.metrics.verifyFailures.WithLabelValues("size").Inc()
				return fmt.Errorf("get %s: %w: %w: file server announced %d bytes, sent %d", hash, ErrUpstream, ErrIntegrity, size, pos)
			case ctx.Err() != nil:
				return ctx.Err()
			}
			var we *writeError
			if errors.As(err, &we) {
				var df *DiskFullError
				if errors.As(we.err, &df) {
					return df
				}
				return fmt.Errorf("get %s: write temp file: %w", hash, we.err)
			}
			if n > 0 {
				failures, wait = 0, c.opts.RetryWait
			}
			lastErr = fmt.Errorf("read after %d bytes: %w", pos, err)
			if !ranged {
				c.metrics.upstreamErrors.Inc()
				return fmt.Errorf("get %s: %w: %w", hash, ErrUpstream, lastErr)
			}
		}
	retry:
		failures++
		if failures > c.opts.Retries {
			c.metrics.upstreamErrors.Inc()
			return fmt.Errorf("get %s: %w: gave up after %d attempts: %w", hash, ErrUpstream, failures, lastErr)
		}
		c.metrics.resumes.Inc()
		c.logger.Info("upstream read broke, resuming by range", "sha256", hash, "at", pos, "err", lastErr, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// copyRange copies body into the temp file at [pos, end), reporting
// progress; io.EOF means the body ended early.
func (c *Cache) copyRange(ctx context.Context, fl *flight, tmp *os.File, i int, body io.Reader, pos, end int64) (int64, error) {
	src := &limitedReader{ctx: ctx, r: body, lim: c.opts.UpstreamLimit, count: c.metrics.upstreamBytes.Add}
	buf := make([]byte, readBuf)
	start, saved := pos, pos
	for pos < end {
		if pos-saved >= saveEvery {
			if err := c.saveState(fl); err != nil {
				c.logger.Debug("save fetch state", "sha256", fl.hash, "err", err)
			}
			saved = pos
		}
		k, err := src.Read(buf[:min(int64(len(buf)), end-pos)])
		if k > 0 {
			if werr := c.writeAt(fl, tmp, buf[:k], pos); werr != nil {
				return pos - start, &writeError{werr}
			}
			fl.written.Add(int64(k))
			pos += int64(k)
			fl.progress(i, pos)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && pos == end {
				break
			}
			return pos - start, err
		}
	}
	return pos - start, nil
}

// errStalled is an upstream read that brought nothing for
// Options.StallTimeout.
var errStalled = errors.New("no byte from the file server")

// stallReader gives up a read of r, the body of a request, that brings
// nothing for d, by cancelling the request: a file server that stops
// sending but keeps its connection open would hold the read for ever.
// Only the wait for the file server counts, not the rate limit's.
type stallReader struct {
	r      io.Reader
	d      time.Duration
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (s *stallReader) Read(p []byte) (int, error) {
	t := time.AfterFunc(s.d, func() {
		s.fired.Store(true)
		s.cancel()
	})
	n, err := s.r.Read(p)
	t.Stop()
	if err != nil && !errors.Is(err, io.EOF) && s.fired.Load() {
		err = fmt.Errorf("%w for %v", errStalled, s.d)
	}
	return n, err
}

// limitedReader holds reads to a shared rate and counts them as they
// arrive, so that a metric moves during a long download.
type limitedReader struct {
	ctx   context.Context
	r     io.Reader
	lim   *rate.Limiter
	count func(float64)
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if lr.lim != nil && lr.lim.Limit() != rate.Inf {
		if b := lr.lim.Burst(); len(p) > b {
			p = p[:b]
		}
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if lr.count != nil {
			lr.count(float64(n))
		}
		if lr.lim != nil {
			if werr := lr.lim.WaitN(lr.ctx, n); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return n, err
}

// NewLimiter returns a limiter of bytesPerSec shared by its users, or nil
// (no limit) for 0. Its burst allows one read of the cache's buffer size.
func NewLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), max(readBuf, int(bytesPerSec/20)))
}

// LimitReader holds r's reads to lim (nil: no limit), waiting with ctx.
func LimitReader(ctx context.Context, r io.Reader, lim *rate.Limiter) io.Reader {
	if lim == nil {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, lim: lim}
}

// fileWriter writes a flight's temp file in order, making room once when
// the disk is full (as Cache.writeAt), and marks its errors, so that a full
// disk is not blamed on the upstream in io.Copy's single error.
type fileWriter struct {
	c  *Cache
	fl *flight
	f  *os.File
}

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && isDiskFull(err) {
		rest := int64(len(p) - n)
		if rerr := w.c.roomAfterFull(w.fl, rest, err); rerr != nil {
			err = rerr
		} else {
			var m int
			m, err = w.f.Write(p[n:])
			n += m
			if err != nil && isDiskFull(err) {
				err = w.c.fullAgain(w.fl, int64(len(p)-n), err)
			}
		}
	}
	w.fl.written.Add(int64(n))
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
