package gossip

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// What a member announces, as memberlist carries it (at most 512 bytes):
//
//	[0]      metaVersion
//	[1]      flags: metaRollup, metaHoldings
//	[2:4]    content port, big-endian
//	[4:12]   sequence: when the member signed it (Unix ms, and higher
//	         than any it signed before), big-endian
//	[...]    the holdings filter (HoldingsBytes), when metaHoldings is set
//	[1]      the length of the member's pass, then the pass
//	         (wire.SignedMemberPass, encoded; none: length 0)
//	[64]     Ed25519 signature by the pass's gossip key over metaContext,
//	         the member's name, a zero byte, its gossip IP (16 bytes) and
//	         port (2), and everything above
//
// The signature binds what a member says to its name and address: a
// holder of the office key can repeat a member's newest announcement, but
// not an older one (members keep the highest sequence they verified of
// each member, until it leaves), move it to another address, change it,
// or make one up for a name the coordinator gave no pass to.
const (
	metaVersion  = 2
	metaRollup   = 1 << 0
	metaHoldings = 1 << 1
	metaContext  = "outpost-gossip-meta-v1\x00"
	metaHeader   = 12
)

// encodeMeta lays out m, its sequence and the pass, unsigned.
func encodeMeta(seq uint64, m Meta, pass []byte) []byte {
	b := make([]byte, metaHeader, metaHeader+HoldingsBytes+1+len(pass)+ed25519.SignatureSize)
	b[0] = metaVersion
	if m.Rollup {
		b[1] |= metaRollup
	}
	binary.BigEndian.PutUint16(b[2:], uint16(m.ContentPort))
	binary.BigEndian.PutUint64(b[4:], seq)
	if len(m.Holdings) == HoldingsBytes {
		b[1] |= metaHoldings
		b = append(b, m.Holdings...)
	}
	b = append(b, byte(len(pass)))
	return append(b, pass...)
}

// signedMeta is what the member's signature covers.
func signedMeta(name string, ip net.IP, port uint16, body []byte) []byte {
	msg := make([]byte, 0, len(metaContext)+len(name)+1+net.IPv6len+2+len(body))
	msg = append(msg, metaContext...)
	msg = append(msg, name...)
	msg = append(msg, 0)
	msg = append(msg, ip.To16()...)
	msg = binary.BigEndian.AppendUint16(msg, port)
	return append(msg, body...)
}

// signMeta is this member's announcement: m, its sequence, its pass and
// its signature for its name and address.
func signMeta(key ed25519.PrivateKey, name string, ip net.IP, port uint16, seq uint64, m Meta, pass []byte) []byte {
	body := encodeMeta(seq, m, pass)
	return append(body, ed25519.Sign(key, signedMeta(name, ip, port, body))...)
}

// rawMeta is an announcement taken apart, nothing in it checked but its
// shape.
type rawMeta struct {
	seq  uint64
	meta Meta
	pass []byte
	body []byte // what the signature covers, after the name and address
	sig  []byte
}

// decodeMeta takes an announcement apart. Everything in it comes from the
// network: it is bounded and checked for shape here, and believed only
// once verifyMeta has checked the pass and the signature.
func decodeMeta(b []byte) (rawMeta, error) {
	var r rawMeta
	if len(b) < metaHeader+1+ed25519.SignatureSize {
		return r, fmt.Errorf("gossip meta of %d bytes is too short", len(b))
	}
	if b[0] != metaVersion {
		return r, fmt.Errorf("gossip meta version %d (want %d): the member runs another release", b[0], metaVersion)
	}
	flags := b[1]
	if flags&^(metaRollup|metaHoldings) != 0 {
		return r, fmt.Errorf("gossip meta: unknown flags %#x", flags)
	}
	r.meta.Rollup = flags&metaRollup != 0
	r.meta.ContentPort = int(binary.BigEndian.Uint16(b[2:]))
	r.seq = binary.BigEndian.Uint64(b[4:])
	rest := b[metaHeader : len(b)-ed25519.SignatureSize]
	if flags&metaHoldings != 0 {
		if len(rest) < HoldingsBytes {
			return r, errors.New("gossip meta: holdings filter cut short")
		}
		r.meta.Holdings = Holdings(bytes.Clone(rest[:HoldingsBytes]))
		rest = rest[HoldingsBytes:]
	}
	if len(rest) < 1 || int(rest[0]) != len(rest)-1 {
		return r, errors.New("gossip meta: the pass's length does not match")
	}
	r.pass = rest[1:]
	r.body = b[:len(b)-ed25519.SignatureSize]
	r.sig = b[len(b)-ed25519.SignatureSize:]
	return r, nil
}

// verifier checks what peers announce against the coordinator's key,
// remembering what it checked: memberlist hands every member's
// announcement over again at each exchange of state, and a signature is
// checked once per change.
type verifier struct {
	key ed25519.PublicKey
	now func() time.Time

	mu     sync.Mutex
	passes map[string]*wire.MemberPass // by the encoded pass
	seen   map[string]seenMeta         // by member name: its last good announcement
	// newest is the highest sequence verified of each member, until it
	// leaves (forget): an older announcement is a replay.
	newest map[string]uint64
}

type seenMeta struct {
	ip       string
	port     uint16
	raw      []byte
	meta     Meta
	notAfter time.Time
}

// maxVerified bounds what the verifier remembers: far more than an
// office's members, and passes are only ever the coordinator's.
const maxVerified = 8192

func newVerifier(key ed25519.PublicKey) *verifier {
	return &verifier{key: key, now: time.Now, passes: map[string]*wire.MemberPass{}, seen: map[string]seenMeta{}, newest: map[string]uint64{}}
}

// errNoPass is why a member without a pass is not listed.
var errNoPass = errors.New("announces no member pass (enrolled with a release before passes, or not yet checked in)")

// verify checks that name, at ip:port, announced b: b carries a pass the
// coordinator signed for name, and is signed with the pass's key for that
// name and address. The role is the pass's.
func (v *verifier) verify(name string, ip net.IP, port uint16, b []byte) (Meta, error) {
	now := v.now()
	v.mu.Lock()
	if s, ok := v.seen[name]; ok && s.port == port && s.ip == string(ip.To16()) && bytes.Equal(s.raw, b) {
		v.mu.Unlock()
		if now.After(s.notAfter) {
			return Meta{}, fmt.Errorf("member pass of %s: %w", name, wire.ErrPassExpired)
		}
		return s.meta, nil
	}
	v.mu.Unlock()
	r, err := decodeMeta(b)
	if err != nil {
		return Meta{}, err
	}
	if len(r.pass) == 0 {
		return Meta{}, errNoPass
	}
	v.mu.Lock()
	newest := v.newest[name]
	v.mu.Unlock()
	if r.seq < newest {
		return Meta{}, fmt.Errorf("an announcement older than one already taken (sequence %d, %d taken): a replay", r.seq, newest)
	}
	pass, err := v.pass(r.pass, now)
	if err != nil {
		return Meta{}, err
	}
	if pass.GetMemberId() != name {
		return Meta{}, fmt.Errorf("announces the pass of %s", pass.GetMemberId())
	}
	if !ed25519.Verify(ed25519.PublicKey(pass.GetGossipKey()), signedMeta(name, ip, port, r.body), r.sig) {
		return Meta{}, errors.New("announcement not signed by its pass's key for its name and address")
	}
	r.meta.Role = wire.RoleName(pass.GetRole())
	v.mu.Lock()
	if len(v.seen) >= maxVerified {
		clear(v.seen)
	}
	if v.newest[name] > r.seq { // a newer one verified meanwhile
		v.mu.Unlock()
		return Meta{}, errors.New("an announcement older than one already taken: a replay")
	}
	v.seen[name] = seenMeta{ip: string(ip.To16()), port: port, raw: bytes.Clone(b), meta: r.meta,
		notAfter: time.Unix(pass.GetNotAfterUnix(), 0).Add(wire.PassGrace)}
	if len(v.newest) >= maxVerified*8 {
		clear(v.newest) // only members with a pass come here: never, in practice
	}
	v.newest[name] = r.seq
	v.mu.Unlock()
	return r.meta, nil
}

// forget drops what was verified of a member that left or died: one that
// comes back (restarted, its clock set back meanwhile) starts afresh.
func (v *verifier) forget(name string) {
	v.mu.Lock()
	delete(v.seen, name)
	delete(v.newest, name)
	v.mu.Unlock()
}

// expired tells whether the pass of the member last verified as name has
// ended (its day's grace included).
func (v *verifier) expired(name string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.seen[name]
	return ok && now.After(s.notAfter)
}

// pass verifies an encoded pass, once.
func (v *verifier) pass(b []byte, now time.Time) (*wire.MemberPass, error) {
	v.mu.Lock()
	p, ok := v.passes[string(b)]
	v.mu.Unlock()
	if ok {
		if now.After(time.Unix(p.GetNotAfterUnix(), 0).Add(wire.PassGrace)) {
			return nil, fmt.Errorf("member pass of %s: %w", p.GetMemberId(), wire.ErrPassExpired)
		}
		return p, nil
	}
	p, err := wire.VerifyPass(v.key, b, now)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.passes) >= maxVerified {
		clear(v.passes)
	}
	v.passes[string(b)] = p
	v.mu.Unlock()
	return p, nil
}
