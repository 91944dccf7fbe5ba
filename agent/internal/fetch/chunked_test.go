package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

func TestBitset(t *testing.T) {
	b := newBitset(11)
	if len(b) != 2 || b.count() != 0 {
		t.Fatalf("new bitset %v", b)
	}
	for _, i := range []int{0, 7, 8, 10} {
		b.set(i)
	}
	b.clear(7)
	for i := range 11 {
		want := i == 0 || i == 8 || i == 10
		if b.has(i) != want {
			t.Errorf("has(%d) = %v", i, b.has(i))
		}
	}
	if b.count() != 3 || b.has(-1) || b.has(99) {
		t.Errorf("count %d, out of range has", b.count())
	}
}

// The sidecar comes back as saved; one that does not fit the artifact (or
// is damaged) starts over rather than trusting anything in it.
func TestProgressSidecar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.chunks.json")
	p := loadProgress(path, 10_000, 1000, 10)
	p.Done.set(3)
	p.Done.set(9)
	p.Partial[4] = 500
	if err := p.save(true); err != nil {
		t.Fatal(err)
	}
	got := loadProgress(path, 10_000, 1000, 10)
	if !got.Done.has(3) || !got.Done.has(9) || got.Done.count() != 2 || got.Partial[4] != 500 {
		t.Fatalf("loaded %+v", got)
	}
	for name, p := range map[string]*progress{
		"other chunk size": loadProgress(path, 10_000, 2000, 5),
		"other size":       loadProgress(path, 9_000, 1000, 9),
	} {
		if p.Done.count() != 0 || len(p.Partial) != 0 {
			t.Errorf("%s: kept %+v", name, p)
		}
	}
	// Partial entries that make no sense are dropped, the rest kept.
	os.WriteFile(path, []byte(`{"chunk_size":1000,"size":10000,"done":"CAA=","partial":{"3":10,"4":1000,"-1":5,"99":5,"5":20}}`), 0o600)
	got = loadProgress(path, 10_000, 1000, 10)
	if !got.Done.has(3) || len(got.Partial) != 1 || got.Partial[5] != 20 {
		t.Errorf("loaded %+v, want chunk 3 done and only chunk 5 partial", got)
	}
	os.WriteFile(path, []byte(`{garbage`), 0o600)
	if got := loadProgress(path, 10_000, 1000, 10); got.Done.count() != 0 {
		t.Errorf("garbage sidecar kept %+v", got)
	}
}

// A relay sending a chunk that fails its hash: the chunk is never kept
// (nor offered to peers), the good chunks are, and a later fetch from a
// good source completes from where it was.
func TestChunkVerifierKeepsOnlyGoodChunks(t *testing.T) {
	data := make([]byte, 10*1000+123)
	rand.Read(data)
	a := chunkedArtifact(data, 1000)
	bad := append([]byte(nil), data...)
	bad[4500] ^= 1 // chunk 4
	badRelay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bad))
	}))
	defer badRelay.Close()
	reg := prometheus.NewRegistry()
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 10 * time.Second}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Get(context.Background(), a, Sources{Relays: []string{badRelay.URL}})
	if err == nil || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("fetch from a relay with a bad chunk: %v", err)
	}
	m, err := f.ChunkMap(a.GetSha256(), "")
	have, n := m.Have, m.N
	if err != nil || n != 11 {
		t.Fatalf("chunk map: %v, n %d", err, n)
	}
	if bitset(have).has(4) || bitset(have).count() < 5 {
		t.Errorf("chunks held %08b: want most, never chunk 4", have)
	}
	var missing float64
	for i := range n {
		if !bitset(have).has(i) {
			_, l := a.ChunkRange(i)
			missing += float64(l)
		}
	}
	if _, err := f.OpenChunk(a.GetSha256(), 4); err == nil {
		t.Error("the bad chunk is offered to peers")
	}
	good, _ := serve(t, data)
	before := fetched(t, reg, "relay", "")
	path, err := f.Get(context.Background(), a, Sources{Relays: []string{good.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if got := fetched(t, reg, "relay", "") - before; got != missing {
		t.Errorf("the second fetch took %v bytes, want the missing chunks' %v", got, missing)
	}
}

// Who asked about an artifact is remembered for askerTTL, within bounds: a
// full list makes room by forgetting members that asked too long ago, and
// no more than maxAskedArtifacts artifacts are tracked.
func TestAskersAreBounded(t *testing.T) {
	f := &Fetcher{askers: map[string]map[string]time.Time{}}
	sha := strings.Repeat("a", 64)
	for i := range maxFetchers + 10 {
		f.noteAsker(sha, fmt.Sprint("m", i))
	}
	if n := len(f.askers[sha]); n != maxFetchers {
		t.Fatalf("%d askers kept, want the cap %d", n, maxFetchers)
	}
	// Every one of them asked long ago: a new one takes a place.
	for name := range f.askers[sha] {
		f.askers[sha][name] = time.Now().Add(-2 * askerTTL)
	}
	f.noteAsker(sha, "late")
	if got := f.recentAskers(sha, time.Now()); len(got) != 1 || got[0] != "late" {
		t.Fatalf("recent askers %v, want [late]", got)
	}
	for i := range maxAskedArtifacts + 5 {
		f.noteAsker(fmt.Sprintf("%064x", i+1), "m")
	}
	if n := len(f.askers); n > maxAskedArtifacts {
		t.Errorf("%d artifacts tracked, want at most %d", n, maxAskedArtifacts)
	}
}

// The relay's work on an artifact is split among its downloaders about
// evenly, every chunk to exactly one of them, whatever the artifact and
// the members' names: a member's share strays from an even one no more
// than a fair draw's would.
func TestSharesOfTheRelaysWorkAreEven(t *testing.T) {
	const n, artifacts = 64, 200
	for _, members := range [][]string{
		{"ag-0a1b2c3d4e5f6a7b", "ag-0a1b2c3d4e5f6a7c"},
		{"ag-self", "ag-evil"},
		{"ag-1", "ag-2", "ag-3", "ag-4"},
	} {
		var stray float64
		for k := range artifacts {
			sum := sha256.Sum256([]byte{byte(k), byte(k >> 8)})
			sha := hex.EncodeToString(sum[:])
			owners := make([]int, n)
			for _, m := range members {
				mine := shareOf(sha, m, members, n)
				c := 0
				for i := range n {
					if mine.has(i) {
						owners[i]++
						c++
					}
				}
				stray += math.Abs(float64(c) - float64(n)/float64(len(members)))
			}
			for i, o := range owners {
				if o != 1 {
					t.Fatalf("%v, artifact %d: chunk %d has %d owners", members, k, i, o)
				}
			}
		}
		// A fair draw strays by sqrt(2/pi) of its standard deviation on
		// average; allow half as much again.
		p := 1 / float64(len(members))
		fair := math.Sqrt(2/math.Pi) * math.Sqrt(n*p*(1-p))
		if got := stray / float64(artifacts*len(members)); got > 1.5*fair {
			t.Errorf("%v: a share strays from an even one by %.1f chunks of %d on average; a fair draw by %.1f", members, got, n, fair)
		}
	}
}
