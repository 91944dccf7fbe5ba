package cache

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// stallingUpstream is a rangeFake whose first connection stops sending
// after some bytes and stays open, as a file server that hangs does: its
// read blocks until the request is cancelled.
type stallingUpstream struct {
	*rangeFake
	at      int64
	stalled bool
}

func (u *stallingUpstream) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	return u.OpenRange(ctx, hash, 0, -1)
}

func (u *stallingUpstream) OpenRange(ctx context.Context, hash string, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := u.rangeFake.OpenRange(ctx, hash, off, n)
	if err != nil || u.stalled {
		return rc, size, err
	}
	u.stalled = true
	return &stallingBody{ReadCloser: rc, ctx: ctx, left: u.at - off}, size, nil
}

type stallingBody struct {
	io.ReadCloser
	ctx  context.Context
	left int64
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	n, err := b.ReadCloser.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

// A file server that stops sending mid-artifact but keeps the connection
// open does not hold the fetch for ever: the read is given up once it has
// brought nothing for StallTimeout, and the range resumes from where it
// stopped. A pinned fetch needs this most: no reader leaving cancels it,
// so every client of the artifact, and pre-staging, would wait on it.
func TestStalledUpstreamReadIsResumed(t *testing.T) {
	data := blob("stalled ", 3<<20)
	hash := hashOf(data)
	up := &stallingUpstream{rangeFake: newRangeFake(data), at: 1 << 20}
	h := newHarnessOpts(t, up, "", Options{StallTimeout: time.Second, RetryWait: time.Millisecond})
	t.Cleanup(h.c.Stop) // before Wait: a stalled pinned fetch would hold it
	h.c.SetPinned([]string{hash})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, _, err := h.c.Get(ctx, hash)
	if err != nil {
		t.Fatalf("Get of an artifact whose file server stalled: %v", err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if got := up.sent.Load(); got != int64(len(data)) {
		t.Errorf("upstream sent %d bytes, want %d: the resume did not start where the stall was", got, len(data))
	}
	// One, or more should a read on a loaded machine take a second.
	if got := h.metric(t, "outpost_relay_cache_upstream_resumes_total"); got < 1 {
		t.Errorf("resumes = %v, want 1", got)
	}
}
