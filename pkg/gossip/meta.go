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
//	[...]    the holdings filter (HoldingsBytes), when metaHoldings is set
//	[1]      the length of the member's pass, then the pass
//	         (wire.SignedMemberPass, encoded; none: length 0)
//	[64]     Ed25519 signature by the pass's gossip key over metaContext,
//	         the member's name, a zero byte, its gossip IP (16 bytes) and
//	         port (2), and everything above
//
// The signature binds what a member says to its name and address: a
// holder of the office key can repeat a member's announcement, but not
// move it to another address, change it, or make one up for a name the
// coordinator gave no pass to.
const (
	metaVersion  = 2
	metaRollup   = 1 << 0
	metaHoldings = 1 << 1
	metaContext  = "outpost-gossip-meta-v1\x00"
	metaHeader   = 4
)

// encodeMeta lays out m and the pass, unsigned.
func encodeMeta(m Meta, pass []byte) []byte {
	b := make([]byte, metaHeader, metaHeader+HoldingsBytes+1+len(pass)+ed25519.SignatureSize)
	b[0] = metaVersion
	if m.Rollup {
		b[1] |= metaRollup
	}
	binary.BigEndian.PutUint16(b[2:], uint16(m.ContentPort))
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

// signMeta is this member's announcement: m, its pass and its signature
// for its name and address.
func signMeta(key ed25519.PrivateKey, name string, ip net.IP, port uint16, m Meta, pass []byte) []byte {
	body := encodeMeta(m, pass)
	return append(body, ed25519.Sign(key, signedMeta(name, ip, port, body))...)
}

// rawMeta is an announcement taken apart, nothing in it checked but its
// shape.
type rawMeta struct {
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
	return &verifier{key: key, now: time.Now, passes: map[string]*wire.MemberPass{}, seen: map[string]seenMeta{}}
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
	v.seen[name] = seenMeta{ip: string(ip.To16()), port: port, raw: bytes.Clone(b), meta: r.meta,
		notAfter: time.Unix(pass.GetNotAfterUnix(), 0).Add(wire.PassGrace)}
	v.mu.Unlock()
	return r.meta, nil
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
