package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Request bodies and their deadlines. The admin servers have no read
// timeout, for the uploads that stream gigabytes: every other body must
// arrive whole within Deps.BodyWait (set for each request in ServeHTTP),
// and an upload may go no longer than Deps.UploadIdle without a byte.

const (
	defaultBodyWait   = time.Minute
	defaultUploadIdle = time.Minute
)

// hasBody says whether a request comes with a body to read.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody
}

// timedOut says whether err is a read that ran into its deadline.
func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// deadlineBody is a request body that must arrive within the request's
// deadline: a read past it is answered 408, saying so.
type deadlineBody struct {
	io.ReadCloser
	wait time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if timedOut(err) {
		err = httpError(http.StatusRequestTimeout, "the request body did not arrive within %v: send it again", b.wait)
	}
	return n, err
}

// uploadBody is an artifact upload's body. An upload may take hours (16
// GiB on a slow line) and has no deadline as a whole; a read that waits
// idle for a byte ends it instead. The deadline is put on the connection
// only once a read has waited that long: the time the file server takes
// with a part between reads is not the client's, and net/http watches
// the connection itself (and clears its deadline) once the body ended,
// so that a future deadline set then could end the request later on.
//
// A body cut short is an error here, never an end: the file server's
// client takes a reader's io.ErrUnexpectedEOF for the end of a stream of
// unknown length, and would store what came as a whole artifact.
type uploadBody struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration

	mu       sync.Mutex
	reading  uint64 // the number of the read under way; 0 when none
	reads    uint64
	timedOut bool
	eof      bool // the body was read to its end
	n        int64
	failed   error // the answer to give when reading failed
}

func newUploadBody(w http.ResponseWriter, r io.Reader, idle time.Duration) *uploadBody {
	return &uploadBody{r: r, rc: http.NewResponseController(w), idle: idle}
}

// start clears the deadline the whole body would otherwise have: from
// here on the idle limit holds.
func (b *uploadBody) start() {
	_ = b.rc.SetReadDeadline(time.Time{})
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.failed != nil {
		defer b.mu.Unlock()
		return 0, b.failed
	}
	b.reads++
	this := b.reads
	b.reading = this
	b.mu.Unlock()
	t := time.AfterFunc(b.idle, func() { b.expire(this) })
	n, err := b.r.Read(p)
	t.Stop()

	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = 0
	b.n += int64(n)
	switch {
	case b.timedOut:
		// Also when bytes came just as the deadline passed: the
		// connection's deadline is behind it now.
		b.failed = httpError(http.StatusRequestTimeout, "the upload brought no byte for %v (after %d bytes): it is given up and nothing is stored; send it again", b.idle, b.n)
	case err == nil || err == io.EOF:
		b.eof = err == io.EOF
		return n, err
	case errors.Is(err, io.ErrUnexpectedEOF):
		b.failed = httpError(http.StatusBadRequest, "the upload was cut short after %d bytes (the client stopped sending before its end): nothing is stored; send it again", b.n)
	default:
		var se *statusError
		if errors.As(err, &se) {
			b.failed = err
		} else {
			b.failed = httpError(http.StatusBadRequest, "the upload was cut short after %d bytes (%v): nothing is stored; send it again", b.n, err)
		}
	}
	return n, b.failed
}

// expire ends read number this, if it still waits: a read deadline in
// the past makes the pending read on the connection fail at once.
func (b *uploadBody) expire(this uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reading != this {
		return
	}
	b.timedOut = true
	_ = b.rc.SetReadDeadline(time.Now())
}

// finish gives what is left of the body, when the upload stopped reading
// before its end (the file server failed, say), wait to arrive: net/http
// reads up to 256 KiB of it before it answers. A body read to its end is
// left alone (net/http watches the connection then), as is one whose
// deadline passed already.
func (b *uploadBody) finish(wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof && !b.timedOut {
		_ = b.rc.SetReadDeadline(time.Now().Add(wait))
	}
}

// failure is why reading the upload failed, as the answer to give: the
// client's doing, not the file server's. Nil when reading did not fail.
func (b *uploadBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}
