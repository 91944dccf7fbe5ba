package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

func chunkedArtifact(data []byte, chunk int64) *wire.Artifact {
	a := artifact(data)
	h := wire.NewChunkHasher(chunk)
	h.Write(data)
	_, a.ChunkSha256 = h.Sum()
	a.ChunkSize = chunk
	return a
}

// TestChunkedFetchHelperProcess is the agent process that
// BenchmarkChunkedResumeAfterKill kills; it does nothing in a normal run.
func TestChunkedFetchHelperProcess(t *testing.T) {
	if os.Getenv("OUTPOST_CHUNKED_HELPER") != "1" {
		t.Skip("the helper process of BenchmarkChunkedResumeAfterKill")
	}
	size, _ := strconv.ParseInt(os.Getenv("OUTPOST_FETCH_SIZE"), 10, 64)
	f, err := New(os.Getenv("OUTPOST_FETCH_DIR"), nil, &http.Client{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := os.ReadFile(os.Getenv("OUTPOST_FETCH_CHUNKS"))
	a := &wire.Artifact{Sha256: os.Getenv("OUTPOST_FETCH_SHA"), Size: size, ChunkSize: wire.DefaultChunkSize, ChunkSha256: sums}
	if _, err := f.Get(context.Background(), a, Sources{Relays: []string{os.Getenv("OUTPOST_FETCH_URL")}}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkChunkedResumeAfterKill: an agent process fetching a chunked
// artifact (4 MiB chunks, 4 in flight) from a Range-capable relay is
// killed with SIGKILL once 60% of the bytes were sent; a new one resumes
// from the partial file and its sidecar. It reports the bytes that crossed
// the network twice, to compare with one chunk.
func BenchmarkChunkedResumeAfterKill(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	rand.Read(data)
	a := chunkedArtifact(data, wire.DefaultChunkSize)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, n: &served}
		http.ServeContent(cw, r, "", time.Time{}, &pacedReader{ReadSeeker: bytes.NewReader(data), start: time.Now(), rate: 25e6})
	}))
	defer srv.Close()
	chunks := filepath.Join(b.TempDir(), "chunks")
	if err := os.WriteFile(chunks, a.GetChunkSha256(), 0o600); err != nil {
		b.Fatal(err)
	}
	var worst int64
	for range b.N {
		dir := b.TempDir()
		served.Store(0)
		cmd := exec.Command(os.Args[0], "-test.run=^TestChunkedFetchHelperProcess$")
		cmd.Env = append(os.Environ(), "OUTPOST_CHUNKED_HELPER=1", "OUTPOST_FETCH_DIR="+dir, "OUTPOST_FETCH_SHA="+a.GetSha256(),
			"OUTPOST_FETCH_SIZE="+strconv.Itoa(size), "OUTPOST_FETCH_URL="+srv.URL, "OUTPOST_FETCH_CHUNKS="+chunks)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for served.Load() < size*6/10 {
			time.Sleep(time.Millisecond) // watching another process's download
		}
		cmd.Process.Kill()
		cmd.Wait()
		first := served.Load()
		p := loadProgress(filepath.Join(dir, a.GetSha256()+".chunks.json"), size, wire.DefaultChunkSize, wire.ChunkCount(size, wire.DefaultChunkSize))
		var kept int64
		for i := range wire.ChunkCount(size, wire.DefaultChunkSize) {
			if p.Done.has(i) {
				_, n := a.ChunkRange(i)
				kept += n
			}
		}
		for _, k := range p.Partial {
			kept += k
		}

		f, err := New(dir, nil, &http.Client{}, logging.Discard(), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}}); err != nil {
			b.Fatal(err)
		}
		total := served.Load()
		refetched := total - size
		worst = max(worst, refetched)
		b.ReportMetric(float64(refetched), "refetched-bytes")
		b.ReportMetric(float64(refetched)/wire.DefaultChunkSize, "refetched-chunks")
		fmt.Printf("chunked resume: killed after %d of %d bytes were sent (%.1f%%); the sidecar kept %d (%d chunks done, %d in flight); "+
			"the restarted agent asked for %d; %d bytes crossed twice (%.2f chunks of %d)\n",
			first, size, float64(first)/size*100, kept, p.Done.count(), len(p.Partial), total-first, refetched,
			float64(refetched)/wire.DefaultChunkSize, wire.DefaultChunkSize)
	}
	if worst > wire.DefaultChunkSize {
		b.Errorf("%d bytes crossed twice, more than one chunk", worst)
	}
}
