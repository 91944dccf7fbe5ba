package peercache

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/logging"
)

// oneChunk serves one chunk of size bytes for any artifact.
type oneChunk struct{ data []byte }

func (c oneChunk) ChunkMap(sha, _ string) (fetch.Map, error) {
	return fetch.Map{Have: []byte{1}, Pending: []byte{0}, N: 1}, nil
}
func (c oneChunk) OpenChunk(sha string, i int) (*fetch.Chunk, error) {
	return &fetch.Chunk{SectionReader: io.NewSectionReader(bytes.NewReader(c.data), 0, int64(len(c.data))), Size: int64(len(c.data))}, nil
}
func (c oneChunk) AddServed(string, int64) {}

// holderCounts is an office where every asker is a member and each
// artifact has a fixed number of holders.
type holderCounts map[string]int

func (o holderCounts) IsMember(string) bool       { return true }
func (o holderCounts) HolderCount(sha string) int { return o[sha] }
func (o holderCounts) Name() string               { return "berlin" }

// Each member sends an artifact at the office's budget divided by the
// members announcing it, and each artifact sent at once has its own
// share: a chunk of an artifact eight members hold keeps to an eighth of
// the budget while a chunk of another, held by one, goes out at the whole
// budget beside it (one limiter for both let the second's rate speed the
// first up to the whole budget, or slow a sole holder to an eighth).
func TestEachArtifactSentHasItsOwnShareOfTheBudget(t *testing.T) {
	const budget = 4 << 20
	shaA, shaB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	s, err := New(oneChunk{data: make([]byte, 512<<10)}, holderCounts{shaA: 1, shaB: 8},
		Budget{OfficeBytesPerSec: budget, Concurrent: 4}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handle(w, r, "ag-asker") }))
	defer srv.Close()
	fetchChunk := func(sha string) time.Duration {
		start := time.Now()
		resp, err := http.Get(srv.URL + fetch.PeerChunksPath + sha + "/0")
		if err != nil {
			t.Error(err)
			return 0
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != 512<<10 {
			t.Errorf("%s: %d bytes", sha[:1], n)
		}
		return time.Since(start)
	}
	// B's share is 512 KiB/s: its 512 KiB chunk, less the 256 KiB burst,
	// takes at least 0.5 s however fast the rest goes.
	minB := time.Duration(float64((512<<10)-(256<<10)) / float64(budget/8) * float64(time.Second))
	took := make(chan time.Duration, 1)
	go func() { took <- fetchChunk(shaB) }()
	time.Sleep(50 * time.Millisecond) // B is under way at its share
	doneA := make(chan struct{})
	go func() { fetchChunk(shaA); close(doneA) }() // a chunk of another artifact, one holder
	defer func() { <-doneA }()
	if d := <-took; d < minB*9/10 {
		t.Errorf("a chunk of an artifact 8 members hold went out in %v; its share of the office budget allows no less than %v",
			d.Round(time.Millisecond), minB)
	}
}
