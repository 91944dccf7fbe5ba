package fetch

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	"os"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// bitset marks chunks, one bit each, the first chunk in the low bit of
// the first byte.
type bitset []byte

func newBitset(n int) bitset { return make(bitset, (n+7)/8) }

func (b bitset) has(i int) bool { return i >= 0 && i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 }
func (b bitset) set(i int)      { b[i/8] |= 1 << (i % 8) }
func (b bitset) clear(i int)    { b[i/8] &^= 1 << (i % 8) }

// fits reports whether b is a map of n chunks: its length, and no chunk
// past the last marked (count would exceed n, or reach n with a chunk
// missing).
func (b bitset) fits(n int) bool {
	if len(b) != (n+7)/8 {
		return false
	}
	for i := n; i < len(b)*8; i++ {
		if b.has(i) {
			return false
		}
	}
	return true
}

// decodeMap reads the chunk map of n chunks a peer sent (base64, in
// HeaderHave or HeaderPending); nil when it is not one.
func decodeMap(v string, n int) bitset {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !bitset(b).fits(n) {
		return nil
	}
	return b
}

func (b bitset) count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// progress is what a chunked download has on disk, kept in a sidecar next
// to the partial file so that a restarted agent asks again for at most
// what had arrived since the last save: chunks whose hash checked (saved
// durably, after the chunk's bytes were synced), and how far each chunk in
// flight got (saved every progressEvery bytes, without a sync: it matters
// when the process is killed, and the page cache outlives the process; a
// power loss that loses bytes shows as a chunk failing its hash).
type progress struct {
	path      string
	ChunkSize int64         `json:"chunk_size"`
	Size      int64         `json:"size"`
	Done      bitset        `json:"done"`
	Partial   map[int]int64 `json:"partial,omitempty"` // chunk → bytes from its start
}

// progressEvery is how many bytes of chunks in flight may arrive between
// two saves of the sidecar.
const progressEvery = 256 << 10

// loadProgress reads the sidecar; one that does not fit the artifact (or
// is unreadable) starts over, which costs bytes, never correctness: every
// chunk is checked against its hash before it counts.
func loadProgress(path string, size, chunkSize int64, n int) *progress {
	p := &progress{path: path, ChunkSize: chunkSize, Size: size, Done: newBitset(n), Partial: map[int]int64{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return p
	}
	var got progress
	if json.Unmarshal(b, &got) != nil || got.ChunkSize != chunkSize || got.Size != size || !got.Done.fits(n) {
		return p
	}
	p.Done = got.Done
	for i, k := range got.Partial {
		// The last chunk may be shorter than the others.
		if i >= 0 && i < n && !p.Done.has(i) && k > 0 && k < min(chunkSize, size-int64(i)*chunkSize) {
			p.Partial[i] = k
		}
	}
	return p
}

// save writes the sidecar atomically; durable also syncs it.
func (p *progress) save(durable bool) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if durable {
		return fsutil.WriteFileAtomic(p.path, b, 0o600)
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save download progress: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("save download progress: %w", err)
	}
	return nil
}

func (p *progress) remove() {
	// A leftover sidecar is harmless: one that does not fit is ignored.
	os.Remove(p.path)
	os.Remove(p.path + ".tmp")
}
