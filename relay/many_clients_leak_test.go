package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// A relay runs for a year: thousands of agents' connections, hits,
// misses, artifacts the file server lacks, clients that leave
// mid-download, a file server that refuses the relay. None of it may
// leave a goroutine or an open file behind once the connections are
// gone, against a real MinIO over loopback.
func TestManyClientsAndFailuresLeaveNothingBehind(t *testing.T) {
	m := testutil.StartMinIO(t)
	const bucket = "outpost-artifacts"
	m.MakeBucket(t, bucket)
	small := []byte("a small artifact")
	large := make([]byte, 3<<20)
	rand.Read(large)
	var misses [][]byte
	for i := range 40 {
		misses = append(misses, fmt.Appendf(nil, "artifact %d, fetched on its first ask", i))
	}
	for _, b := range append([][]byte{small, large}, misses...) {
		if _, err := m.Client(t).PutObject(context.Background(), bucket, "sha256/"+hashOf(b), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	cfg.FileServer = FileServerConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	good := startRelay(t, cfg)
	// A relay whose coordinator hands out credentials the file server
	// refuses.
	refused := startRelay(t, testConfig(t), WithFileServer(func(context.Context) (*wire.FileServerResponse, error) {
		return &wire.FileServerResponse{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: "revoked",
			ExpiresUnix: time.Now().Add(time.Hour).Unix(), Region: "us-east-1"}, nil
	}))

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	get := func(method, url string, hdr ...string) int {
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, url, err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	leave := func(url string) { // reads a little and hangs up
		resp, err := client.Get(url)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			return
		}
		io.CopyN(io.Discard, resp.Body, 1024)
		resp.Body.Close()
	}
	round := func(i int) {
		g, r := good.url+BlobPath, refused.url+BlobPath
		get("GET", g+hashOf(small))
		get("HEAD", g+hashOf(small))
		get("GET", g+hashOf(large), "Range", "bytes=100-200")
		get("GET", g+hashOf([]byte(fmt.Sprint("never uploaded ", i))))
		get("GET", g+"not-a-hash")
		get("GET", g+hashOf(small), "Range", "bytes=999999-")
		get("GET", r+hashOf(small))
		get("GET", good.url+"/healthz")
		leave(g + hashOf(large))
		if i < len(misses) {
			get("GET", g+hashOf(misses[i]))
		}
	}

	// A first round opens what stays open: the file server's client and
	// its idle connections, the cache's files.
	round(0)
	settle := func() (int, int) {
		client.CloseIdleConnections()
		runtime.GC()
		return runtime.NumGoroutine(), openFDs(t)
	}
	g0, f0 := settle()

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 400; i += 8 {
				round(i)
			}
		})
	}
	wg.Wait()

	// The file server's idle connections (at most 16 per host in
	// minio-go's transport, two goroutines each) may remain; a leak per
	// request, connection or failure would be thousands.
	var g1, f1 int
	testutil.Eventually(t, 30*time.Second, func() bool {
		g1, f1 = settle()
		return g1 <= g0+40 && f1 <= f0+20
	}, "after 400 rounds of requests: %d goroutines (%d before), %d open files (%d before)", g1, g0, f1, f0)
	t.Logf("goroutines %d -> %d, open files %d -> %d", g0, g1, f0, f1)
}
