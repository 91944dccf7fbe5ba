package fetch

import (
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
	if json.Unmarshal(b, &got) != nil || got.ChunkSize != chunkSize || got.Size != size || len(got.Done) != len(p.Done) {
		return p
	}
	p.Done = got.Done
	for i, k := range got.Partial {
		if i >= 0 && i < n && !p.Done.has(i) && k > 0 && k < chunkSize {
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
