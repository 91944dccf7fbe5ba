package artifacts

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// cutShort gives its bytes, then io.ErrUnexpectedEOF, as a body whose
// sender stopped before its end does.
type cutShort struct{ r io.Reader }

func (c *cutShort) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// minio-go takes a reader's io.ErrUnexpectedEOF for the end of a stream of
// unknown length: an upload cut short was stored, truncated, as a whole
// artifact under the hash of what came. The store refuses it, whoever
// calls it, and keeps nothing of it.
func TestAnUploadCutShortIsNotStored(t *testing.T) {
	ts := newTestStore(t)
	content := data(5000, 3)
	sha, _, err := ts.Upload(t.Context(), &cutShort{bytes.NewReader(content)}, -1)
	if err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Upload of a body cut short: %s, %v; want refused as cut short", sha, err)
	}
	for o := range ts.root.ListObjects(t.Context(), ts.Bucket(), minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("left on the file server: %s (%v)", o.Key, o.Err)
	}
}

// gate holds an upload's body until it is opened.
type gate struct {
	r       io.Reader
	started chan struct{}
	open    chan struct{}
	once    bool
}

func (g *gate) Read(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.started)
		<-g.open
	}
	return g.r.Read(p)
}

// Each upload holds a part buffer of the file server's client (16 MiB, up
// to hundreds for a large max_size): any number at once could take the
// coordinator's memory. Uploads beyond the budget wait for a slot; a
// waiting one whose client leaves goes, holding nothing.
func TestUploadsBeyondTheMemoryBudgetWait(t *testing.T) {
	ts := newTestStore(t)
	ts.uploads = newUploadSlots(int64(ts.partSize)) // room for one
	first := &gate{r: bytes.NewReader(data(1000, 1)), started: make(chan struct{}), open: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, _, err := ts.Upload(context.Background(), first, -1)
		done <- err
	}()
	<-first.started
	second := make(chan error, 1)
	go func() {
		_, _, err := ts.Upload(context.Background(), bytes.NewReader(data(1000, 2)), -1)
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("a second upload ran beside the first with room for one: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// One that waits and is given up holds nothing.
	ctx, cancel := context.WithCancel(context.Background())
	third := make(chan error, 1)
	go func() {
		_, _, err := ts.Upload(ctx, bytes.NewReader(data(1000, 4)), -1)
		third <- err
	}()
	cancel()
	if err := <-third; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting upload given up: %v", err)
	}
	close(first.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the second upload, once the first was done: %v", err)
	}
}
