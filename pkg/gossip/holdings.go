package gossip

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// HoldingsBytes is the size of the filter a member announces of the
// artifacts it holds: 2048 bits, so that the whole announcement stays well
// inside memberlist's 512-byte limit on node metadata.
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

// ParseMeta decodes what a peer announces. Everything in it comes from the
// network: a member that announces nonsense is treated as announcing
// nothing, never trusted further.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("gossip meta: %w", err)
	}
	if len(m.Role) > 16 {
		return Meta{}, fmt.Errorf("gossip meta: role of %d bytes", len(m.Role))
	}
	if m.ContentPort < 0 || m.ContentPort > 65535 {
		return Meta{}, fmt.Errorf("gossip meta: content port %d", m.ContentPort)
	}
	if len(m.Holdings) != 0 && len(m.Holdings) != HoldingsBytes {
		err := fmt.Errorf("gossip meta: holdings filter of %d bytes, want %d", len(m.Holdings), HoldingsBytes)
		// Keep the rest: the member is still a member.
		m.Holdings = nil
		return m, err
	}
	return m, nil
}
