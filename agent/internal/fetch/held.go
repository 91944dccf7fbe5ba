package fetch

import (
	"errors"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/outposthq/outpost/pkg/wire"
)

// held is an artifact this agent can serve chunks of to office peers:
// complete and verified, or partly fetched with the chunks whose hash
// checked. Bytes not yet checked are never served.
type held struct {
	a *wire.Artifact
	n int

	mu       sync.Mutex
	path     string // the partial file, then the final one
	have     bitset
	pending  bitset // chunks being fetched now: peers wait for them rather than asking the relay too
	complete bool
	fetching bool // a download is running: it will get its share
	added    uint64
}

// ErrNotHeld is returned for an artifact or chunk this agent cannot serve.
var ErrNotHeld = errors.New("not held here")

// track starts (or returns) the held record of a chunked artifact.
func (f *Fetcher) track(a *wire.Artifact, n int, path string, have bitset, complete bool) *held {
	f.hmu.Lock()
	h := f.held[a.GetSha256()]
	isNew := h == nil
	if isNew {
		f.seq++
		h = &held{a: a, n: n, added: f.seq}
		f.held[a.GetSha256()] = h
	}
	f.hmu.Unlock()
	h.mu.Lock()
	h.path, h.have, h.complete = path, have, complete
	h.mu.Unlock()
	if isNew && f.onHoldings != nil {
		f.onHoldings()
	}
	return h
}

func (f *Fetcher) lookup(sha string) *held {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	return f.held[sha]
}

// Holdings lists the artifacts with chunks to serve, newest first.
func (f *Fetcher) Holdings() []string {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	hs := make([]*held, 0, len(f.held))
	for _, h := range f.held {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].added > hs[j].added })
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.a.GetSha256()
	}
	return out
}

// OnHoldings sets what to call when Holdings gains an artifact; set it
// before the first Get.
func (f *Fetcher) OnHoldings(fn func()) { f.onHoldings = fn }

// ChunkMap says which chunks of sha this agent can serve and which it is
// fetching now (copies), how many the artifact has, and whether a
// download of it is running here.
func (f *Fetcher) ChunkMap(sha string) (have, pending []byte, n int, fetching bool, err error) {
	h := f.lookup(sha)
	if h == nil {
		return nil, nil, 0, false, ErrNotHeld
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pending = newBitset(h.n)
	if h.fetching && h.pending != nil {
		copy(pending, h.pending)
	}
	return append([]byte(nil), h.have...), pending, h.n, h.fetching, nil
}

// Chunk is one verified chunk opened for serving.
type Chunk struct {
	*io.SectionReader
	file *os.File
	Size int64
}

// Close closes the file under the chunk.
func (c *Chunk) Close() error { return c.file.Close() }

// OpenChunk opens chunk i of sha for reading, if its hash has checked
// here; ErrNotHeld otherwise.
func (f *Fetcher) OpenChunk(sha string, i int) (*Chunk, error) {
	h := f.lookup(sha)
	if h == nil {
		return nil, ErrNotHeld
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 || i >= h.n || !h.have.has(i) {
		return nil, ErrNotHeld
	}
	// Opened under the lock: the partial file may be renamed into place
	// right after, and an open file follows the rename.
	fh, err := os.Open(h.path)
	if err != nil {
		return nil, err
	}
	off, n := h.a.ChunkRange(i)
	return &Chunk{SectionReader: io.NewSectionReader(fh, off, n), file: fh, Size: n}, nil
}
