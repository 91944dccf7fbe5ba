package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A fetch does not start when the content directory has less room than
// the artifact still needs (its size minus what a partial download of it
// holds): the item fails with why, and not a byte is downloaded.
func TestFetchRefusesToStartWhenFreeSpaceIsShort(t *testing.T) {
	body := make([]byte, 100_000)
	rand.Read(body)
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	src := Sources{Relays: []string{srv.URL}}

	t.Run("whole", func(t *testing.T) {
		ranges = nil
		f := newFetcher(t, nil)
		a := artifact(body)
		a.Name = "pkg-4.0.tar.gz"
		free := uint64(60_000)
		var asked []string
		f.freeSpace = func(dir string) (uint64, bool) { asked = append(asked, dir); return free, true }
		_, err := f.Get(context.Background(), a, src)
		var se *SpaceError
		if !errors.As(err, &se) || se.Need != 100_000 || se.Free != 60_000 {
			t.Fatalf("got %v, want a SpaceError needing 100000 with 60000 free", err)
		}
		want := fmt.Sprintf("not enough disk space for pkg-4.0.tar.gz: need 97.7 KiB, 58.6 KiB free in %s", f.dir)
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q, want it to say %q", err, want)
		}
		if len(ranges) != 0 || len(asked) != 1 || asked[0] != f.dir {
			t.Fatalf("%d requests (want none), free space asked of %v (want the content directory)", len(ranges), asked)
		}
		if _, err := os.Stat(filepath.Join(f.dir, a.Sha256+".part")); !os.IsNotExist(err) {
			t.Fatal("a partial file was started")
		}
		// Half of it held already: what is left fits.
		os.WriteFile(filepath.Join(f.dir, a.Sha256+".part"), body[:50_000], 0o600)
		if _, err := f.Get(context.Background(), a, src); err != nil {
			t.Fatal(err)
		}
		if len(ranges) != 1 || ranges[0] != "bytes=50000-" {
			t.Fatalf("ranges asked %q, want the rest from 50000", ranges)
		}
		// Held: no room is needed.
		free = 0
		if _, err := f.Get(context.Background(), a, src); err != nil {
			t.Fatalf("a cached artifact on a full disk: %v", err)
		}
	})

	t.Run("chunked", func(t *testing.T) {
		ranges = nil
		f := newFetcher(t, nil)
		a := chunkedArtifact(body, 10_000)
		f.freeSpace = func(string) (uint64, bool) { return 99_999, true }
		_, err := f.Get(context.Background(), a, src)
		var se *SpaceError
		if !errors.As(err, &se) || se.Need != 100_000 || !strings.Contains(err.Error(), "not enough disk space for "+a.Sha256[:12]+":") {
			t.Fatalf("got %v, want a SpaceError needing 100000", err)
		}
		if len(ranges) != 0 {
			t.Fatalf("%d requests, want none", len(ranges))
		}
		if _, err := os.Stat(filepath.Join(f.dir, a.Sha256+".chunked")); !os.IsNotExist(err) {
			t.Fatal("a partial file was started")
		}
		// Three chunks and 500 bytes of a fourth held: 69 500 to go.
		part := filepath.Join(f.dir, a.Sha256+".chunked")
		os.WriteFile(part, nil, 0o600)
		p := loadProgress(filepath.Join(f.dir, a.Sha256+".chunks.json"), a.Size, a.ChunkSize, 10)
		for _, i := range []int{0, 4, 9} {
			p.Done.set(i)
		}
		p.Partial[5] = 500
		if err := p.save(true); err != nil {
			t.Fatal(err)
		}
		if got := f.partialHolds(a, true, 10); got != 30_500 {
			t.Fatalf("partial holds %d, want 30500", got)
		}
		f.freeSpace = func(string) (uint64, bool) { return 69_499, true }
		if _, err := f.Get(context.Background(), a, src); !errors.As(err, &se) || se.Need != 69_500 {
			t.Fatalf("got %v, want a SpaceError needing 69500", err)
		}
	})

	t.Run("unknown free space", func(t *testing.T) {
		f := newFetcher(t, nil)
		f.freeSpace = func(string) (uint64, bool) { return 0, false }
		if _, err := f.Get(context.Background(), artifact(body), src); err != nil {
			t.Fatal(err)
		}
	})
}
