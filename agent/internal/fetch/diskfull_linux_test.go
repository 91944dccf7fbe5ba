package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// fillUpTo writes a file in dir until at most leave bytes are free.
func fillUpTo(t *testing.T, dir string, leave int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Error(err)
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free > leave {
		if err := os.WriteFile(filepath.Join(dir, "filler"), make([]byte, free-leave), 0o600); err != nil {
			t.Error(err)
		}
	}
}

func diskFetcher(t *testing.T, dir string) *Fetcher {
	t.Helper()
	f, err := New(dir, nil, &http.Client{Timeout: 10 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// An artifact larger than the disk's free space is not fetched at all:
// downloading it would only fill the disk the agent's state lives on.
func TestFetchRefusedWithoutRoomOnDisk(t *testing.T) {
	disk := testutil.TinyDisk(t, "512k")
	body := make([]byte, 1<<20)
	rand.Read(body)
	for name, a := range map[string]*wire.Artifact{"whole": artifact(body), "chunked": chunkedArtifact(body, 64<<10)} {
		t.Run(name, func(t *testing.T) {
			a.Name = "big-" + name + ".tar.gz"
			srv, hits := serve(t, body)
			dir := filepath.Join(disk, name)
			f := diskFetcher(t, dir)
			_, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}})
			if err == nil || !strings.Contains(err.Error(), "not enough disk space for "+a.Name+": need 1.0 MiB") ||
				!strings.Contains(err.Error(), "free in "+dir) {
				t.Fatalf("fetch of 1 MiB onto a 512 KiB disk: %v", err)
			}
			if hits.Load() != 0 {
				t.Fatalf("%d requests to the relay, want none", hits.Load())
			}
			if left := contentFiles(t, dir); len(left) != 0 {
				t.Fatalf("left on disk: %v", left)
			}
		})
	}
}

// A download that fills the disk anyway (something else took the space
// meanwhile) gives its bytes back: the partial download is removed, so
// that the agent can still write its state.
func TestFullDiskMidFetchRemovesPartial(t *testing.T) {
	body := make([]byte, 512<<10)
	rand.Read(body)
	for name, a := range map[string]*wire.Artifact{"whole": artifact(body), "chunked": chunkedArtifact(body, 64<<10)} {
		t.Run(name, func(t *testing.T) {
			disk := testutil.TinyDisk(t, "1m")
			// The disk is filled after the check and before any byte is
			// served: a chunked fetch asks for several ranges at once, and
			// none of them is answered until the filler is written, or
			// the filler's size would race the first chunk's bytes.
			var fill sync.Once
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fill.Do(func() { fillUpTo(t, disk, 128<<10) })
				http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
			}))
			t.Cleanup(srv.Close)
			dir := filepath.Join(disk, "content")
			f := diskFetcher(t, dir)
			_, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}})
			if err == nil || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fetch onto a disk filled meanwhile: %v, want ENOSPC", err)
			}
			if left := contentFiles(t, dir); len(left) != 0 {
				t.Fatalf("partial download left on the full disk: %v", left)
			}
			// The state can be written: what the download took is free.
			if err := os.WriteFile(filepath.Join(disk, "report.pb"), make([]byte, 64<<10), 0o600); err != nil {
				t.Fatalf("write the state after the fetch: %v", err)
			}
		})
	}
}

// The free space the check goes by is the file system's.
func TestDiskFreeIsTheFileSystems(t *testing.T) {
	disk := testutil.TinyDisk(t, "512k")
	if free, ok := diskFree(disk); !ok || free != 512<<10 {
		t.Fatalf("free %d (known %v), want 512 KiB", free, ok)
	}
	fillUpTo(t, disk, 64<<10)
	if free, ok := diskFree(disk); !ok || free != 64<<10 {
		t.Fatalf("free %d (known %v) once filled, want 64 KiB", free, ok)
	}
}

// contentFiles lists what the cache holds of artifacts (its bookkeeping
// of figures aside).
func contentFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "fetched.json" && e.Name() != "used.json" {
			out = append(out, e.Name())
		}
	}
	return out
}
