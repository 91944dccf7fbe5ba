package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

// A peer that answers a chunk at once and then sends its bytes one at a
// time, slower than any office network (slowloris), holds no chunk for
// ever: the chunk is taken from the relay instead, and the download ends.
// The peer client is like the agent's: no overall timeout (chunks are
// large), and every byte that comes resets any idle timer.
func TestASlowlorisPeerDoesNotHoldAChunkForEver(t *testing.T) {
	const chunk = 64 << 10
	n := 4
	data := make([]byte, n*chunk)
	rand.Read(data)
	a := chunkedArtifact(data, chunk)
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(allOnes(n)))
		if strings.Count(strings.TrimPrefix(r.URL.Path, PeerChunksPath), "/") == 0 {
			w.Write(allOnes(n))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(chunk))
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	relay, _ := serve(t, data)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}},
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ResponseHeaderTimeout: 30 * time.Second}}}
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 5 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const stall = 300 * time.Millisecond
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond, StallAfter: stall})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: o}); err != nil {
		t.Fatalf("%d chunks from a healthy relay and a peer sending one byte every 20ms: %v after %v (StallAfter %v)",
			n, err, time.Since(start).Round(time.Millisecond), stall)
	}
}

// A kill after the last byte of a whole download arrived, while the
// partial file was being synced (seconds for a large artifact) and before
// it was renamed into place, costs no download: the next run finds every
// byte checked in the partial and moves it into place.
func TestACompletePartialDownloadIsNotFetchedAgain(t *testing.T) {
	body := bytes.Repeat([]byte("outpost "), 10000)
	a := artifact(body)
	relay, hits := serve(t, body)
	f := newFetcher(t, nil)
	if err := os.WriteFile(filepath.Join(f.dir, a.GetSha256()+".part"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("bytes differ")
	}
	if h := hits.Load(); h != 0 {
		t.Errorf("the relay was asked %d times for an artifact whose every byte was in its checked partial download", h)
	}
}

// A member that says it is fetching every chunk and never gets one holds
// the others back for one StallAfter at most: after that its word does
// not make this member give up the chunks it takes from the relay either
// (each given up is asked of the relay again, and the relay's bytes in
// flight are lost).
func TestALyingFetcherDoesNotMakeThisMemberGiveUpRelayChunks(t *testing.T) {
	const chunk = 64 << 10
	const n = 8
	data := make([]byte, n*chunk)
	rand.Read(data)
	a := chunkedArtifact(data, chunk)
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(newBitset(n)))
		w.Header().Set(HeaderFetching, "1")
		w.Header().Set(HeaderPending, base64.StdEncoding.EncodeToString(allOnes(n)))
		w.Write(newBitset(n))
	}))
	var asked atomic.Int32
	// A relay that sends a chunk in about 160ms.
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		var from, to int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); err != nil {
			http.Error(w, "range wanted", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
		w.WriteHeader(http.StatusPartialContent)
		for p := from; p <= to; p += 4 << 10 {
			if _, err := w.Write(data[p:min(p+4<<10, to+1)]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(relay.Close)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}}}
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 10 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const stall = 300 * time.Millisecond
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond, StallAfter: stall})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: o}); err != nil {
		t.Fatal(err)
	}
	if got := asked.Load(); got > n+2 {
		t.Errorf("the relay was asked %d times for %d chunks: chunks taken from it were given up for a member that said it was fetching them and never got one",
			got, n)
	}
}

// A relay that sends every byte of an artifact and then holds the
// response open (no end, no Content-Length) costs no second download:
// the bytes it sent check, and are installed, rather than fetched again
// over the WAN from the file server.
func TestEveryByteFromAStalledRelayIsNotFetchedAgain(t *testing.T) {
	body := bytes.Repeat([]byte("outpost "), 10000)
	a := artifact(body)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(relay.Close)
	fileServer, hits := serve(t, body)
	f, err := New(t.TempDir(), presignFunc(func(context.Context, string) (string, error) { return fileServer.URL, nil }),
		&http.Client{Timeout: 500 * time.Millisecond}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	path, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("bytes differ")
	}
	if h := hits.Load(); h != 0 {
		t.Errorf("the file server was asked %d times for an artifact whose every byte had come from the relay and checked", h)
	}
}
