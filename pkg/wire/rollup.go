package wire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// The roll-up carries members' check-ins through one member of their
// office. Each check-in is signed with its member's certificate key, so
// the carrier cannot forge or alter one; the coordinator's answer to each
// is signed with the policy key, so no office peer can make a member
// forget reports the coordinator does not have.

const (
	checkinContext   = "outpost-checkin-v1\x00"
	rollupAckContext = "outpost-rollup-ack-v1\x00"
)

// Bounds of one check-in. The coordinator refuses a check-in beyond them,
// and a roll-up member does not carry one: it would be refused.
const (
	MaxCheckinAddresses   = 32
	MaxCheckinReportItems = 10000
	MaxCheckinPeerReports = 64
	MaxCheckinBacklog     = 64
	// MaxCarriedCheckin bounds the bytes of one member's signed check-in
	// that a roll-up member carries. A report of a few hundred items with
	// a backlog of dozens of runs fits; a member whose check-in is larger
	// checks in directly. Without it, one check-in (gossip carries up to
	// 8 MiB) would make the carrier's own check-in too large to send.
	MaxCarriedCheckin = 1 << 20
)

// CheckinTooLarge tells whether req is beyond the bounds of one check-in
// (its roll-up aside).
func CheckinTooLarge(req *CheckinRequest) bool {
	if len(req.GetAddresses()) > MaxCheckinAddresses || len(req.GetReport().GetItems()) > MaxCheckinReportItems ||
		len(req.GetPeerReports()) > MaxCheckinPeerReports || len(req.GetBacklog()) > MaxCheckinBacklog {
		return true
	}
	// The backlog's runs are kept as the newest one is: the same bound.
	for _, r := range req.GetBacklog() {
		if len(r.GetItems()) > MaxCheckinReportItems {
			return true
		}
	}
	return false
}

// ErrBadCheckin is returned for a rolled-up check-in that does not verify.
var ErrBadCheckin = errors.New("rolled-up check-in does not verify")

// SignCheckin signs a member's check-in for the roll-up. key is the
// private key of certDER, the member's certificate.
func SignCheckin(key crypto.Signer, certDER []byte, memberID string, at time.Time, req *CheckinRequest) (*SignedCheckin, error) {
	b, err := proto.Marshal(&RollupReport{MemberId: memberID, SignedUnix: at.Unix(), Checkin: req})
	if err != nil {
		return nil, fmt.Errorf("encode check-in: %w", err)
	}
	sum := sha256.Sum256(append([]byte(checkinContext), b...))
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign check-in: %w", err)
	}
	return &SignedCheckin{Report: b, Signature: sig, Certificate: certDER}, nil
}

// VerifyCheckin checks that sc was signed by a member certificate the CA
// in roots issued, and returns the report it carries, whose member id is
// the certificate's. It decodes nothing of the report before the
// signature verifies.
func VerifyCheckin(sc *SignedCheckin, roots *x509.CertPool, now time.Time) (*RollupReport, error) {
	return NewCheckinVerifier(func() *x509.CertPool { return roots }, 0).Verify(sc, now)
}

// CheckinVerifier is VerifyCheckin that remembers the member certificates
// it has verified. A member signs every check-in with the same
// certificate, and checking its chain cost as much as the signature: a
// roll-up member and the coordinator verify a whole office's check-ins
// after every rollout. The signature is checked every time; a remembered
// certificate still only counts within its validity.
type CheckinVerifier struct {
	roots func() *x509.CertPool
	max   int // certificates remembered; 0 remembers none

	mu    sync.Mutex
	certs map[[32]byte]verifiedCert
}

type verifiedCert struct {
	pub                 *ecdsa.PublicKey
	member              string
	notBefore, notAfter time.Time
}

// NewCheckinVerifier verifies against roots (as it returns them when a
// certificate is new: the CA's certificates can be renewed) and
// remembers up to max certificates (forgetting all of them when full: a
// hint, not a store).
func NewCheckinVerifier(roots func() *x509.CertPool, max int) *CheckinVerifier {
	return &CheckinVerifier{roots: roots, max: max, certs: map[[32]byte]verifiedCert{}}
}

// Verify is VerifyCheckin.
func (v *CheckinVerifier) Verify(sc *SignedCheckin, now time.Time) (*RollupReport, error) {
	if sc == nil || len(sc.GetReport()) == 0 || len(sc.GetCertificate()) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCheckin)
	}
	c, err := v.certificate(sc.GetCertificate(), now)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte(checkinContext), sc.GetReport()...))
	if !ecdsa.VerifyASN1(c.pub, sum[:], sc.GetSignature()) {
		return nil, fmt.Errorf("%w: signature (member %s)", ErrBadCheckin, c.member)
	}
	var r RollupReport
	if err := Unmarshal(sc.GetReport(), &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckin, err)
	}
	if r.GetMemberId() != c.member || r.GetCheckin() == nil {
		return nil, fmt.Errorf("%w: member %q signed for %q", ErrBadCheckin, c.member, r.GetMemberId())
	}
	return &r, nil
}

// certificate parses and verifies der, or finds it verified before.
func (v *CheckinVerifier) certificate(der []byte, now time.Time) (verifiedCert, error) {
	key := sha256.Sum256(der)
	v.mu.Lock()
	c, ok := v.certs[key]
	v.mu.Unlock()
	if ok && !now.Before(c.notBefore) && !now.After(c.notAfter) {
		return c, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return c, fmt.Errorf("%w: certificate: %v", ErrBadCheckin, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return c, fmt.Errorf("%w: certificate: %v", ErrBadCheckin, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return c, fmt.Errorf("%w: certificate key is not ECDSA", ErrBadCheckin)
	}
	c = verifiedCert{pub: pub, member: cert.Subject.CommonName, notBefore: cert.NotBefore, notAfter: cert.NotAfter}
	if v.max > 0 {
		v.mu.Lock()
		if len(v.certs) >= v.max {
			clear(v.certs)
		}
		v.certs[key] = c
		v.mu.Unlock()
	}
	return c, nil
}

// SignRollupAck signs the coordinator's answer to one rolled-up check-in.
func SignRollupAck(priv ed25519.PrivateKey, ack *RollupAck) (*SignedRollupAck, error) {
	b, err := proto.Marshal(ack)
	if err != nil {
		return nil, fmt.Errorf("encode roll-up ack: %w", err)
	}
	return &SignedRollupAck{Ack: b, Signature: ed25519.Sign(priv, append([]byte(rollupAckContext), b...)), MemberId: ack.GetMemberId()}, nil
}

// VerifyRollupAck checks an answer against the pinned policy key.
func VerifyRollupAck(pub ed25519.PublicKey, s *SignedRollupAck) (*RollupAck, error) {
	if len(pub) != ed25519.PublicKeySize || s == nil {
		return nil, errors.New("verify roll-up ack: no key or no ack")
	}
	if !ed25519.Verify(pub, append([]byte(rollupAckContext), s.GetAck()...), s.GetSignature()) {
		return nil, fmt.Errorf("verify roll-up ack: %w", ErrBadSignature)
	}
	var a RollupAck
	if err := Unmarshal(s.GetAck(), &a); err != nil {
		return nil, fmt.Errorf("decode roll-up ack: %w", err)
	}
	return &a, nil
}

// OfficeDigest sums what a member needs to hear directly from the
// coordinator of its office: everything in info but the gossip seeds and
// the revision, which change all the time and travel by gossip anyway.
func OfficeDigest(info *OfficeInfo) []byte {
	if info == nil {
		return nil
	}
	c := proto.Clone(info).(*OfficeInfo)
	c.GossipSeeds, c.Revision = nil, 0
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(b)
	return sum[:16]
}
