package fetch

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// checkProgress fails t unless p is a sidecar a download may resume from:
// a chunk map of n chunks with nothing past the last, and partial chunks
// that are real chunks, not done, and short of their own length.
func checkProgress(t *testing.T, p *progress, a *wire.Artifact, n int) {
	t.Helper()
	if len(p.Done) != len(newBitset(n)) {
		t.Fatalf("chunk map of %d bytes for %d chunks", len(p.Done), n)
	}
	for i := n; i < len(p.Done)*8; i++ {
		if p.Done.has(i) {
			t.Fatalf("chunk %d of %d marked done", i, n)
		}
	}
	if p.Done.count() > n {
		t.Fatalf("%d of %d chunks done", p.Done.count(), n)
	}
	for i, k := range p.Partial {
		if i < 0 || i >= n || p.Done.has(i) {
			t.Fatalf("partial chunk %d of %d (done %v)", i, n, p.Done.has(i))
		}
		if _, l := a.ChunkRange(i); k <= 0 || k >= l {
			t.Fatalf("chunk %d partial at %d of its %d bytes", i, k, l)
		}
	}
}

// A resume sidecar is read back from disk, where anything may have become
// of it: whatever it says, the download resumes only from chunks that
// exist and offsets inside them, and what it saves it reads back alike.
//
// The sidecar is taken as bytes, or, when those are empty, made of a
// chunk map and one partial chunk, which the fuzzer finds more easily
// than inside JSON.
func FuzzLoadProgress(f *testing.F) {
	none := []byte(nil)
	f.Add([]byte(`{"chunk_size":1000,"size":10000,"done":"CAA=","partial":{"5":20}}`), int64(10_000), int64(1000), none, 0, int64(0))
	f.Add([]byte(`{"chunk_size":1000,"size":10500,"done":"/wc=","partial":{"10":499}}`), int64(10_500), int64(1000), none, 0, int64(0))
	f.Add([]byte(`{"chunk_size":1000,"size":10000,"done":"CAA=","partial":{"3":10,"4":1000,"-1":5,"99":5}}`), int64(10_000), int64(1000), none, 0, int64(0))
	f.Add([]byte(`{garbage`), int64(100), int64(10), none, 0, int64(0))
	f.Add([]byte(`null`), int64(1), int64(1), none, 0, int64(0))
	f.Add(none, int64(10_500), int64(1000), []byte{0x01, 0x02}, 4, int64(999))
	// Found: a chunk map with a chunk past the last marked done (the
	// download then never saw all n chunks done and waited forever), and
	// a partial last chunk longer than that chunk (every request for its
	// rest was out of range, and the download failed at every attempt).
	f.Add([]byte(`{"chunk_size":4,"size":9,"done":"CA=="}`), int64(9), int64(4), none, 0, int64(0))
	f.Add([]byte(`{"chunk_size":7,"size":7,"done":"/w==","partial":{}}`), int64(7), int64(7), none, 0, int64(0))
	f.Add([]byte(`{"chunk_size":1000,"size":10500,"done":"AAA=","partial":{"10":700}}`), int64(10_500), int64(1000), none, 0, int64(0))
	path := filepath.Join(f.TempDir(), "x.chunks.json")
	f.Fuzz(func(t *testing.T, sidecar []byte, size, chunkSize int64, done []byte, partial int, at int64) {
		n := wire.ChunkCount(size, chunkSize)
		if n == 0 || n > 4096 {
			return
		}
		if len(sidecar) == 0 {
			sidecar, _ = json.Marshal(progress{ChunkSize: chunkSize, Size: size, Done: done, Partial: map[int]int64{partial: at}})
		}
		a := &wire.Artifact{Size: size, ChunkSize: chunkSize}
		if err := os.WriteFile(path, sidecar, 0o600); err != nil {
			t.Fatal(err)
		}
		p := loadProgress(path, size, chunkSize, n)
		checkProgress(t, p, a, n)

		if err := p.save(false); err != nil {
			t.Fatal(err)
		}
		again := loadProgress(path, size, chunkSize, n)
		checkProgress(t, again, a, n)
		b1, _ := json.Marshal(p)
		b2, _ := json.Marshal(again)
		if string(b1) != string(b2) {
			t.Fatalf("saved %s, read back %s", b1, b2)
		}
	})
}

// The chunk map and the fetchers a peer sends with every answer are a
// peer's word, not to be trusted: a map is taken only when it is one of
// the artifact's n chunks (a chunk past the last would count towards n,
// and make a peer missing a chunk look complete), and the fetchers are
// bounded plausible member names.
func FuzzPeerChunkMap(f *testing.F) {
	f.Add("/wc=", "AQA=", "ag-1,ag-2", 11)
	f.Add("", "", "", 1)
	f.Add("AA==", "AA", ",,,", 3)
	f.Add("/w==", "gA==", "a b,ag-\u00e9,"+strings.Repeat("x", 129), 8)
	f.Add("CA==\n", "", strings.Repeat("a,", 100), 3)
	// Found with FuzzLoadProgress: chunks past the last (8 bits for 3 chunks).
	f.Add("Bw8=", "CA==", "ag-1", 3)
	f.Fuzz(func(t *testing.T, have, pending, fetchers string, n int) {
		if n <= 0 || n > wire.MaxChunks {
			return
		}
		for _, v := range []string{have, pending} {
			m := decodeMap(v, n)
			if m == nil {
				continue
			}
			if len(m) != len(newBitset(n)) || m.count() > n {
				t.Fatalf("%q: map of %d bytes with %d chunks for %d chunks", v, len(m), m.count(), n)
			}
			for i := n; i < len(m)*8; i++ {
				if m.has(i) {
					t.Fatalf("%q: chunk %d of %d", v, i, n)
				}
			}
			// What this agent's peer server sends (peercache) reads back the same.
			if again := decodeMap(base64.StdEncoding.EncodeToString(m), n); !bytes.Equal(again, m) {
				t.Fatalf("%q: %x read back as %x", v, m, again)
			}
		}
		names := parseFetchers(fetchers)
		if len(names) > maxFetchers {
			t.Fatalf("%d fetchers", len(names))
		}
		for _, name := range names {
			if !validMemberName(name) || strings.Contains(name, ",") {
				t.Fatalf("fetcher %q taken", name)
			}
			if !slices.Contains(strings.Split(fetchers, ","), name) {
				t.Fatalf("fetcher %q is not in %q", name, fetchers)
			}
		}
	})
}
