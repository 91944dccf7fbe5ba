package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Received counts artifact bytes as they arrive, and the agent's hang
// watchdog takes it as the progress of a download: a chunked download
// (the normal path: the coordinator chunks every uploaded artifact)
// counts each read, not a 256 KiB block at a time, so that a slow link
// that still delivers is no hang.
func TestChunkedReceivedCountsBytesAsTheyArrive(t *testing.T) {
	body := bytes.Repeat([]byte("outpost!"), 128<<10) // 1 MiB, one chunk
	a := chunkedArtifact(body, int64(len(body)))
	const sent = 100 << 10 // what the slow link delivered so far
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, to := 0, len(body)-1
		if rg := r.Header.Get("Range"); rg != "" {
			parts := strings.SplitN(strings.TrimPrefix(rg, "bytes="), "-", 2)
			from, _ = strconv.Atoi(parts[0])
			if parts[1] != "" {
				to, _ = strconv.Atoi(parts[1])
			}
		}
		part := body[from : to+1]
		w.Header().Set("Content-Length", fmt.Sprint(len(part)))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(part[:sent])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(part[sent:])
	}))
	t.Cleanup(srv.Close)
	f := newFetcher(t, presignFunc(func(context.Context, string) (string, error) { return "", errors.New("unused") }))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.Get(ctx, a, Sources{Relays: []string{srv.URL}})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.Received() < sent {
		if time.Now().After(deadline) {
			got := f.Received()
			close(release)
			<-done
			t.Fatalf("%d bytes of a chunk arrived 5 s ago; Received says %d: a slow chunked download is no progress to the hang watchdog", sent, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
