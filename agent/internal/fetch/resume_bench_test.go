package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
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

// TestFetchHelperProcess is the agent process that BenchmarkResumeAfterKill
// kills; it does nothing in a normal test run.
func TestFetchHelperProcess(t *testing.T) {
	if os.Getenv("OUTPOST_FETCH_HELPER") != "1" {
		t.Skip("the helper process of BenchmarkResumeAfterKill")
	}
	size, _ := strconv.ParseInt(os.Getenv("OUTPOST_FETCH_SIZE"), 10, 64)
	f, err := New(os.Getenv("OUTPOST_FETCH_DIR"), nil, &http.Client{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a := &wire.Artifact{Sha256: os.Getenv("OUTPOST_FETCH_SHA"), Size: size}
	if _, err := f.Get(context.Background(), a, Sources{Relays: []string{os.Getenv("OUTPOST_FETCH_URL")}}); err != nil {
		t.Fatal(err)
	}
}

// pacedReader hands out at most rate bytes per second, so that the kill
// lands near 60%.
type pacedReader struct {
	io.ReadSeeker
	start time.Time
	rate  float64
	sent  int64
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if ahead := time.Duration(float64(p.sent)/p.rate*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n, err := p.ReadSeeker.Read(b[:min(len(b), 64<<10)])
	p.sent += int64(n)
	return n, err
}

// BenchmarkResumeAfterKill: an agent process is killed (SIGKILL) at 60% of
// a download from a Range-capable server (the relay's behaviour); a new
// one resumes from the partial file. It reports the bytes that crossed the
// network twice, to compare with one chunk (4 MiB, the relay's range unit).
func BenchmarkResumeAfterKill(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	rand.Read(data)
	a := artifact(data)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, n: &served}
		http.ServeContent(cw, r, "", time.Time{}, &pacedReader{ReadSeeker: bytes.NewReader(data), start: time.Now(), rate: 100e6})
	}))
	defer srv.Close()

	for range b.N {
		dir := b.TempDir()
		served.Store(0)
		cmd := exec.Command(os.Args[0], "-test.run=^TestFetchHelperProcess$")
		cmd.Env = append(os.Environ(), "OUTPOST_FETCH_HELPER=1", "OUTPOST_FETCH_DIR="+dir, "OUTPOST_FETCH_SHA="+a.GetSha256(),
			"OUTPOST_FETCH_SIZE="+strconv.Itoa(size), "OUTPOST_FETCH_URL="+srv.URL)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		part := filepath.Join(dir, a.GetSha256()+".part")
		for {
			if fi, err := os.Stat(part); err == nil && fi.Size() >= size*6/10 {
				break
			}
			time.Sleep(time.Millisecond) // polling another process's file
		}
		cmd.Process.Kill()
		cmd.Wait()
		fi, err := os.Stat(part)
		if err != nil {
			b.Fatal(err)
		}
		first := served.Load()

		f, err := New(dir, nil, &http.Client{}, logging.Discard(), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}}); err != nil {
			b.Fatal(err)
		}
		total := served.Load()
		refetched := total - size
		b.ReportMetric(float64(refetched), "refetched-bytes")
		b.ReportMetric(float64(fi.Size())/size*100, "killed-at-%")
		fmt.Printf("resume: agent killed with %d of %d bytes on disk (%.1f%%), %d sent before the kill; "+
			"the restarted agent asked for %d; %d bytes crossed twice (one chunk is %d)\n",
			fi.Size(), size, float64(fi.Size())/size*100, first, total-first, refetched, 4<<20)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}
