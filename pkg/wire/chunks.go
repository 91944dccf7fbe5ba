package wire

import (
	"crypto/sha256"
	"fmt"
	"hash"
)

// DefaultChunkSize is the piece an artifact is cut in for fetching from
// several office peers at once: large enough that a request's overhead
// does not count, small enough that a lost one costs little.
const DefaultChunkSize = 4 << 20

// MaxChunks bounds the chunk list of one artifact (a 40 GiB artifact at
// 4 MiB), so that a signed policy stays a few hundred KiB at most.
const MaxChunks = 10240

// ChunkCount is how many chunks of chunkSize an artifact of size bytes has.
func ChunkCount(size, chunkSize int64) int {
	if chunkSize <= 0 || size <= 0 {
		return 0
	}
	return int((size + chunkSize - 1) / chunkSize)
}

// Chunks checks an artifact's chunk list against its size. ok is false
// for an artifact without one (fetched whole); err is for a list that
// does not fit the size, which a correctly signed policy never carries.
func (a *Artifact) Chunks() (n int, ok bool, err error) {
	cs, list := a.GetChunkSize(), a.GetChunkSha256()
	if cs == 0 && len(list) == 0 {
		return 0, false, nil
	}
	n = ChunkCount(a.GetSize(), cs)
	if cs <= 0 || n == 0 || n > MaxChunks || len(list) != n*sha256.Size {
		return 0, false, fmt.Errorf("artifact %.12s: chunk list of %d bytes does not fit %d bytes in chunks of %d", a.GetSha256(), len(list), a.GetSize(), cs)
	}
	return n, true, nil
}

// ChunkHash is the SHA-256 of chunk i; call only after Chunks said ok.
func (a *Artifact) ChunkHash(i int) []byte {
	return a.GetChunkSha256()[i*sha256.Size : (i+1)*sha256.Size]
}

// ChunkRange is the offset and length of chunk i.
func (a *Artifact) ChunkRange(i int) (off, n int64) {
	off = int64(i) * a.GetChunkSize()
	return off, min(a.GetChunkSize(), a.GetSize()-off)
}

// ChunkHasher hashes what is written to it in chunks of a fixed size: the
// coordinator puts an upload through one on its way to the file server.
type ChunkHasher struct {
	size int64
	h    hash.Hash
	in   int64 // bytes in the current chunk
	n    int64
	sums []byte
}

// NewChunkHasher cuts in chunks of size bytes.
func NewChunkHasher(size int64) *ChunkHasher {
	return &ChunkHasher{size: size, h: sha256.New()}
}

func (c *ChunkHasher) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), c.size-c.in)
		c.h.Write(p[:k])
		c.in += k
		c.n += k
		p = p[k:]
		if c.in == c.size {
			c.sums = c.h.Sum(c.sums)
			c.h.Reset()
			c.in = 0
		}
	}
	return total, nil
}

// Sum is the number of bytes written and the concatenated chunk hashes.
func (c *ChunkHasher) Sum() (int64, []byte) {
	sums := c.sums
	if c.in > 0 {
		sums = c.h.Sum(append([]byte(nil), sums...))
	}
	return c.n, sums
}
