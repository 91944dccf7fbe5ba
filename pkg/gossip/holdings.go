package gossip

import (
	"encoding/binary"
	"encoding/hex"
)

// HoldingsBytes is the size of the filter a member announces of the
// artifacts it holds: 2048 bits, so that the whole announcement, with the
// member's pass and signature, stays inside memberlist's 512-byte limit on
// node metadata (meta.go).
const HoldingsBytes = 256

// holdingsProbes is how many bits each artifact sets. With 2048 bits one
// in a thousand lookups is a false positive at 100 artifacts held, one in
// twenty-five at 300; a false positive costs one request answered 404.
const holdingsProbes = 4

// Holdings is a Bloom filter of the SHA-256s of the artifacts a member
// holds (whole, or verified chunks of). It answers "may hold" with rare
// false positives and never a false negative, in a fixed size however many
// artifacts a member holds.
type Holdings []byte

// NewHoldings builds the filter of shas (lower-case hex); malformed ones
// are left out.
func NewHoldings(shas []string) Holdings {
	if len(shas) == 0 {
		return nil
	}
	h := make(Holdings, HoldingsBytes)
	for _, s := range shas {
		for _, bit := range probes(s) {
			h[bit/8] |= 1 << (bit % 8)
		}
	}
	return h
}

// Has reports whether the member may hold sha.
func (h Holdings) Has(sha string) bool {
	if len(h) != HoldingsBytes {
		return false
	}
	bits := probes(sha)
	if bits == nil {
		return false
	}
	for _, bit := range bits {
		if h[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}

// probes are the bit positions of sha. Its bytes are already uniform, so
// they are the hash functions.
func probes(sha string) []uint {
	var raw [32]byte
	if len(sha) != 64 {
		return nil
	}
	if _, err := hex.Decode(raw[:], []byte(sha)); err != nil {
		return nil
	}
	out := make([]uint, holdingsProbes)
	for i := range out {
		out[i] = uint(binary.BigEndian.Uint16(raw[2*i:])) % (HoldingsBytes * 8)
	}
	return out
}
