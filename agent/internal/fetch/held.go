package fetch

import (
	"errors"
	"io"
	"os"
	"sort"
	"sync"
	"time"

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
	fetching bool     // a download is running: it will get its share
	fetchers []string // who the download knows first hand to be downloading it too
	added    uint64
	serving  int // chunks open for peers now: the files are not removed meanwhile
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

// Map is what a member tells an office peer about one artifact.
type Map struct {
	Have     []byte // bitmap of the chunks it can serve
	Pending  []byte // bitmap of the chunks it is fetching now
	N        int    // how many chunks the artifact has
	Fetching bool   // a download of it is running here
	// Fetchers are the members it knows first hand to be downloading the
	// artifact now, itself included: the ones whose chunk maps said so
	// and the ones that asked it. A member whose gossip has not yet
	// carried a peer's holdings hears of that peer this way.
	Fetchers []string
}

// ChunkMap says which chunks of sha this agent can serve and which it is
// fetching now, how many the artifact has, whether a download of it is
// running here and who else it knows to be downloading it. asker is the
// member asking (a member asking for a map is downloading the artifact;
// "" for none); it is remembered even when sha is not held here, since
// this agent may start the same download a moment later.
func (f *Fetcher) ChunkMap(sha, asker string) (Map, error) {
	if asker != "" {
		f.noteAsker(sha, asker)
	}
	h := f.lookup(sha)
	if h == nil {
		return Map{}, ErrNotHeld
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := Map{Have: append([]byte(nil), h.have...), Pending: newBitset(h.n), N: h.n, Fetching: h.fetching}
	if h.fetching {
		if h.pending != nil {
			copy(m.Pending, h.pending)
		}
		m.Fetchers = append([]string(nil), h.fetchers...)
	}
	return m, nil
}

// askerTTL is how long a member that asked about an artifact counts as
// downloading it: several of its map reads while it waits for chunks.
const askerTTL = 5 * time.Second

// maxAskedArtifacts bounds what is remembered of askers.
const maxAskedArtifacts = 256

// noteAsker remembers that member asked about sha just now.
func (f *Fetcher) noteAsker(sha, member string) {
	now := time.Now()
	f.hmu.Lock()
	defer f.hmu.Unlock()
	if f.askers[sha] == nil && len(f.askers) >= maxAskedArtifacts {
		for s, m := range f.askers {
			forgetStale(m, now)
			if len(m) == 0 {
				delete(f.askers, s)
			}
		}
		if len(f.askers) >= maxAskedArtifacts {
			return
		}
	}
	m := f.askers[sha]
	if m == nil {
		m = map[string]time.Time{}
		f.askers[sha] = m
	}
	if _, ok := m[member]; !ok && len(m) >= maxFetchers {
		forgetStale(m, now)
		if len(m) >= maxFetchers {
			return
		}
	}
	m[member] = now
}

// forgetStale drops the askers in m that asked more than askerTTL before
// now.
func forgetStale(m map[string]time.Time, now time.Time) {
	for name, at := range m {
		if now.Sub(at) > askerTTL {
			delete(m, name)
		}
	}
}

// recentAskers lists the members that asked about sha within askerTTL.
func (f *Fetcher) recentAskers(sha string, now time.Time) []string {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	m := f.askers[sha]
	forgetStale(m, now)
	out := make([]string, 0, len(m))
	for name := range m {
		out = append(out, name)
	}
	return out
}

// Chunk is one verified chunk opened for serving.
type Chunk struct {
	*io.SectionReader
	file   *os.File
	h      *held
	closed bool
	Size   int64
}

// Close closes the file under the chunk.
func (c *Chunk) Close() error {
	if !c.closed && c.h != nil {
		c.h.mu.Lock()
		c.h.serving--
		c.h.mu.Unlock()
	}
	c.closed = true
	return c.file.Close()
}

// OpenChunk opens chunk i of sha for reading, if its hash has checked
// here; ErrNotHeld otherwise.
func (f *Fetcher) OpenChunk(sha string, i int) (*Chunk, error) {
	h := f.lookup(sha)
	if h == nil {
		return nil, ErrNotHeld
	}
	f.markUsed(sha, time.Now()) // peers may want more of it a while yet
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
	h.serving++
	return &Chunk{SectionReader: io.NewSectionReader(fh, off, n), file: fh, h: h, Size: n}, nil
}
