package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

type presignFunc func(ctx context.Context, sha string) (string, error)

func (p presignFunc) Presign(ctx context.Context, sha string) (string, error) { return p(ctx, sha) }

func artifact(b []byte) *wire.Artifact {
	sum := sha256.Sum256(b)
	return &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

func newFetcher(t *testing.T, p Presigner) *Fetcher {
	t.Helper()
	f, err := New(t.TempDir(), p, &http.Client{Timeout: 10 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func serve(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestRelayThenCache(t *testing.T) {
	body := []byte(strings.Repeat("outpost ", 1000))
	a := artifact(body)
	srv, hits := serve(t, body)
	f := newFetcher(t, presignFunc(func(context.Context, string) (string, error) { return "", errors.New("unused") }))
	for range 2 {
		path, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if !bytes.Equal(got, body) {
			t.Fatal("cached bytes differ")
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1 (the second from cache)", hits.Load())
	}
}

func TestMismatchNeverCached(t *testing.T) {
	good := []byte("the real package")
	a := artifact(good)
	evil, _ := serve(t, []byte("the evil package"))
	long, _ := serve(t, append(append([]byte{}, good...), 'x'))
	f := newFetcher(t, presignFunc(func(context.Context, string) (string, error) { return "", errors.New("no direct") }))
	for name, url := range map[string]string{"different bytes": evil.URL, "too long": long.URL} {
		t.Run(name, func(t *testing.T) {
			_, err := f.Get(context.Background(), a, Sources{Relays: []string{url}})
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch", err)
			}
			if f.Has(a) {
				t.Fatal("mismatched bytes were cached")
			}
		})
	}
}

func TestFailoverToDirectAndResume(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10000)
	a := artifact(body)
	// The relay dies after half of the bytes.
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(relay.Close)
	var ranges []string
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(direct.Close)
	f := newFetcher(t, presignFunc(func(_ context.Context, sha string) (string, error) { return direct.URL + "/" + sha, nil }))
	path, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, body) {
		t.Fatal("bytes differ")
	}
	if len(ranges) != 1 || ranges[0] != fmt.Sprintf("bytes=%d-", len(body)/2) {
		t.Fatalf("direct source saw ranges %q, want one resuming at %d", ranges, len(body)/2)
	}
	if _, err := os.Stat(filepath.Join(f.dir, a.Sha256+".part")); !os.IsNotExist(err) {
		t.Fatal("partial file left behind")
	}
}

func TestMalformedHash(t *testing.T) {
	f := newFetcher(t, nil)
	if _, err := f.Get(context.Background(), &wire.Artifact{Sha256: "../../etc/passwd", Size: 1}, Sources{}); err == nil {
		t.Fatal("malformed hash accepted")
	}
}

// Received grows as bytes arrive, before the download ends: a long
// download is progress to the agent's hang watchdog.
func TestReceivedCountsBytesAsTheyArrive(t *testing.T) {
	body := bytes.Repeat([]byte("outpost "), 64<<10)
	a := artifact(body)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-release
		w.Write(body[len(body)/2:])
	}))
	t.Cleanup(srv.Close)
	f := newFetcher(t, presignFunc(func(context.Context, string) (string, error) { return "", errors.New("unused") }))
	done := make(chan error, 1)
	go func() {
		_, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.Received() < uint64(len(body)/4) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("half the body sent, %d bytes counted", f.Received())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.Received(); got != uint64(len(body)) {
		t.Fatalf("received %d of %d bytes", got, len(body))
	}
}
