package packages

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// bigArtifact writes, straight to a file, an archive holding a small file
// and then a file of size zero bytes.
func (e *env) bigArtifact(name string, size int64) (string, *wire.Artifact) {
	e.t.Helper()
	p := filepath.Join(e.arts, "big.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	zw, _ := gzip.NewWriterLevel(io.MultiWriter(f, h), gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	put := func(hdr *tar.Header, r io.Reader) {
		if err := tw.WriteHeader(hdr); err != nil {
			e.t.Fatal(err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			e.t.Fatal(err)
		}
	}
	put(&tar.Header{Name: "README", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}, strings.NewReader("hi\n"))
	put(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}, io.LimitReader(zeros{}, size))
	if err := tw.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		e.t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		e.t.Fatal(err)
	}
	return p, &wire.Artifact{Sha256: hex.EncodeToString(h.Sum(nil)), Size: fi.Size(), Name: "big.tar.gz"}
}

// cancelOnFile is a context cancelled as soon as a file exists: seen by a
// watcher, as a cancellation from outside would be, and at every look at
// the context, so that the test does not hang on the scheduler.
type cancelOnFile struct {
	context.Context
	path   string
	cancel context.CancelFunc
	once   sync.Once
	at     time.Time
}

func (c *cancelOnFile) fire() {
	c.once.Do(func() {
		c.at = time.Now()
		c.cancel()
	})
}

func (c *cancelOnFile) Err() error {
	if _, err := os.Lstat(c.path); err == nil {
		c.fire()
	}
	return c.Context.Err()
}

// TestCancelStopsCopyOfLargeFile: an install cancelled while it copies a
// large file stops within that file, not at the end of it, and leaves
// nothing behind.
func TestCancelStopsCopyOfLargeFile(t *testing.T) {
	e := newEnv(t)
	const size = 64 << 20
	p, art := e.bigArtifact("big.bin", size)
	tmp := filepath.Join(e.root, "opt", "big", filepath.FromSlash(tempName("big.bin")))
	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := &cancelOnFile{Context: inner, path: tmp, cancel: cancel}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := os.Lstat(tmp); err == nil {
				ctx.fire()
				return
			}
		}
	}()
	var mu sync.Mutex
	var wrote []string
	e.m.hook = func(point, p string) error {
		if point == "file" {
			mu.Lock()
			wrote = append(wrote, p)
			mu.Unlock()
		}
		return nil
	}
	_, err := e.m.Apply(ctx, &proto.ApplyRequest{Root: e.root, ArtifactPath: p, Item: pkgItem("big", "1", "", wire.State_STATE_PRESENT, art)})
	returned := time.Now()
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "install interrupted") {
		t.Fatalf("cancelled install = %v, want it interrupted", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, w := range wrote {
		if w == "big.bin" {
			t.Fatalf("the copy of big.bin (%d MiB) went on to its end after the install was cancelled", size>>20)
		}
	}
	if ctx.at.IsZero() {
		t.Fatal("the install never started big.bin")
	}
	if d := returned.Sub(ctx.at); d > 5*time.Second {
		t.Errorf("the install took %v to stop once cancelled", d)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("cancelled install left %v", got)
	}
	if e.exists(StateDir+"/big.journal") || e.exists(StateDir+"/big.json") {
		t.Fatal("cancelled install left a journal or manifest")
	}
}
