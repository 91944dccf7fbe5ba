package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

// A kill between the removal of a partial download and of its sidecar
// may leave the sidecar alone: the next download does not trust it, so
// it neither offers peers chunks it does not have nor fails at the end.
func TestASidecarWithoutItsPartialIsNotTrusted(t *testing.T) {
	const chunk = 1000
	data := make([]byte, 4*chunk)
	rand.Read(data)
	a := chunkedArtifact(data, chunk)
	dir := t.TempDir()
	// The sidecar of an earlier download that had chunk 0; its partial is gone.
	side, _ := json.Marshal(map[string]any{"chunk_size": chunk, "size": len(data), "done": []byte{0x01}})
	if err := os.WriteFile(filepath.Join(dir, a.GetSha256()+".chunks.json"), side, 0o600); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer relay.Close()
	f, err := New(dir, nil, &http.Client{Timeout: 5 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}})
		errc <- err
	}()
	// While the download runs, what is offered to peers as chunk 0?
	deadline := time.Now().Add(3 * time.Second)
	var served []byte
	for time.Now().Before(deadline) {
		if c, err := f.OpenChunk(a.GetSha256(), 0); err == nil {
			served, _ = io.ReadAll(c)
			c.Close()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	err = <-errc
	if served != nil && !bytes.Equal(served, data[:chunk]) {
		t.Errorf("chunk 0 offered to peers as verified holds %d bytes that are not the chunk (zeros: %v)",
			len(served), bytes.Equal(served, make([]byte, chunk)))
	}
	if err != nil {
		t.Errorf("download from a healthy relay failed: %v", err)
	}
}
