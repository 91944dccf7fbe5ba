// Package member is what agents and relays share of being a member of an
// office: enrolling with the coordinator, keeping the identity it issued on
// disk, and holding the QUIC connection to the coordinator open (calls out,
// pushes in). It does not decide what to do with policy or content.
package member

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// DefaultPort is the coordinator's QUIC port.
const DefaultPort = "8027"

// Identity is what enrollment leaves a member with.
type Identity struct {
	ID        string
	Office    string
	Role      wire.Role
	PolicyKey ed25519.PublicKey
	GossipKey []byte
	// GossipSigner signs what the member announces to its office.
	GossipSigner ed25519.PrivateKey

	mu sync.Mutex
	// cas are the coordinator CA's certificates the member trusts, the
	// one that ends last first: every one has the same subject and key
	// (the CA renews its certificate with the same key; LearnCAs).
	cas []*x509.Certificate
	// cert is the member's certificate and key (a renewed certificate
	// replaces it, for the same key).
	cert tls.Certificate
	// pass (a wire.SignedMemberPass, encoded; nil until the coordinator
	// issued one) is the coordinator's word that GossipSigner is this
	// member's.
	pass []byte
	// renewTried is when RenewIfDue last asked for a certificate.
	renewTried time.Time
}

// Pass is the member's pass, nil when it has none.
func (id *Identity) Pass() []byte {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.pass
}

// CAs is the coordinator CA's certificates the member trusts, the one
// that ends last first: what it verifies the coordinator, relays and
// peers by (tlsutil.VerifyFromCA).
func (id *Identity) CAs() []*x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return slices.Clone(id.cas)
}

// CAChain is CAs in DER: what the member sends along with its own
// certificate, so that whoever pinned any of them verifies it.
func (id *Identity) CAChain() [][]byte { return tlsutil.DERs(id.CAs()) }

// CAFingerprint is the fingerprint of the CA certificate that ends last,
// which the member tells the coordinator at check-in.
func (id *Identity) CAFingerprint() string {
	cas := id.CAs()
	if len(cas) == 0 {
		return ""
	}
	return tlsutil.Fingerprint(cas[0].Raw)
}

// SetCAs replaces the CA certificates the member trusts (tests, and
// identities made by hand).
func (id *Identity) SetCAs(ders ...[]byte) error {
	cas, err := tlsutil.ParseCerts(ders)
	if err != nil {
		return err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.cas = sortCAs(cas)
	return nil
}

// sortCAs puts the certificate that ends last first.
func sortCAs(cas []*x509.Certificate) []*x509.Certificate {
	slices.SortStableFunc(cas, func(a, b *x509.Certificate) int { return b.NotAfter.Compare(a.NotAfter) })
	return cas
}

// maxCAs bounds the CA certificates a member keeps: one renewal every
// seven years leaves far fewer.
const maxCAs = 16

// LearnCAs takes, from ders (what the coordinator sent), the certificates
// of the CA the member trusts that it does not hold yet — self-signed,
// with the same subject and key as one it holds: anything else is
// ignored — and keeps the whole set in dir. It tells whether any was new.
func (id *Identity) LearnCAs(ders [][]byte, dir string) (bool, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if len(id.cas) == 0 {
		return false, errors.New("no CA certificate held")
	}
	cas := slices.Clone(id.cas)
	for _, d := range ders[:min(len(ders), maxCAs)] {
		c, err := x509.ParseCertificate(d)
		if err != nil || !tlsutil.SameCA(id.cas[0], c) || slices.ContainsFunc(cas, c.Equal) {
			continue
		}
		cas = append(cas, c)
	}
	if len(cas) == len(id.cas) {
		return false, nil
	}
	cas = sortCAs(cas)[:min(len(cas), maxCAs)]
	if err := tlsutil.WriteCerts(filepath.Join(dir, caFile), tlsutil.DERs(cas)); err != nil {
		return false, fmt.Errorf("keep the CA's certificates: %w", err)
	}
	id.cas = cas
	return true, nil
}

// TakeCAs learns the CA certificates a check-in's answer carries
// (LearnCAs), keeping them in dir, and logs what came of it.
func (id *Identity) TakeCAs(ders [][]byte, dir string, log *slog.Logger) {
	if len(ders) == 0 {
		return
	}
	added, err := id.LearnCAs(ders, dir)
	switch {
	case err != nil:
		log.Warn("the coordinator's CA renewed its certificate, and it could not be kept; asking again at the next check-in", "err", err)
	case added:
		cas := id.CAs()
		log.Info("the coordinator's CA renewed its certificate, with the same key: trusting the new one",
			"ca_fingerprint", tlsutil.Fingerprint(cas[0].Raw), "until", cas[0].NotAfter.UTC().Format(time.DateOnly))
	}
}

// Certificate is the member's certificate and key as they are now.
func (id *Identity) Certificate() tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert
}

// SetCertificate replaces the member's certificate and key (tests, and
// identities made by hand).
func (id *Identity) SetCertificate(c tls.Certificate) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.cert = c
}

// ClientCertificate is the member's certificate as it is now, for
// tls.Config.GetClientCertificate: connections made after a renewal show
// the new one. The CA's certificates go along (CAChain), so that a peer
// that holds only an earlier one of them verifies it.
func (id *Identity) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c := id.Certificate()
	if len(c.Certificate) > 0 {
		c.Certificate = append([][]byte{c.Certificate[0]}, id.CAChain()...)
	}
	return &c, nil
}

// ServerCertificate is ClientCertificate for tls.Config.GetCertificate.
func (id *Identity) ServerCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return id.ClientCertificate(nil)
}

// CertDue tells whether the member's certificate ends within
// wire.MemberCertRenewBefore of now, and when it ends.
func (id *Identity) CertDue(now time.Time) (bool, time.Time) {
	c := id.Certificate()
	if c.Leaf == nil {
		if len(c.Certificate) == 0 {
			return false, time.Time{}
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return false, time.Time{}
		}
		c.Leaf = leaf
	}
	due := c.Leaf.NotAfter.Sub(now) < wire.MemberCertRenewBefore
	// One that ends with its CA's newest certificate cannot be renewed
	// for longer (the CA renews its certificate three years before its
	// end; the member learns the new one at check-in).
	if cas := id.CAs(); len(cas) > 0 && !c.Leaf.NotAfter.Before(cas[0].NotAfter) {
		due = false
	}
	return due, c.Leaf.NotAfter
}

// renewEvery is how often a member whose certificate is due asks for a
// new one while the coordinator does not give it (its clock differs, it
// is busy).
const renewEvery = time.Hour

// RenewIfDue renews the member's certificate (RenewCert) when it is due,
// asking at most once per renewEvery, and logs what came of it.
func (id *Identity) RenewIfDue(ctx context.Context, call func(context.Context, *wire.Request) (*wire.Response, error), dir string, log *slog.Logger) {
	now := time.Now()
	due, end := id.CertDue(now)
	if !due {
		return
	}
	id.mu.Lock()
	if now.Sub(id.renewTried) < renewEvery {
		id.mu.Unlock()
		return
	}
	id.renewTried = now
	id.mu.Unlock()
	if err := id.RenewCert(ctx, call, dir); err != nil {
		log.Warn("member certificate not renewed; asking again in an hour", "ends", end.UTC().Format(time.DateOnly), "err", err)
		return
	}
	_, newEnd := id.CertDue(now)
	log.Info("member certificate renewed", "was_until", end.UTC().Format(time.DateOnly), "until", newEnd.UTC().Format(time.DateOnly))
}

// RenewCert asks the coordinator, through call, for a new certificate for
// the member's key, checks it (this member's, this key's, from the CA,
// ending later) and keeps it in dir. Connections made after it show it.
func (id *Identity) RenewCert(ctx context.Context, call func(context.Context, *wire.Request) (*wire.Response, error), dir string) error {
	old := id.Certificate()
	key, ok := old.PrivateKey.(crypto.Signer)
	if !ok || len(old.Certificate) == 0 {
		return errors.New("renew member certificate: no key")
	}
	csr, err := tlsutil.NewCSR(key, id.ID)
	if err != nil {
		return fmt.Errorf("renew member certificate: %w", err)
	}
	resp, err := call(ctx, &wire.Request{Body: &wire.Request_MemberCert{MemberCert: &wire.MemberCertRequest{Csr: csr}}})
	if err != nil {
		return fmt.Errorf("renew member certificate: %w", err)
	}
	der := resp.GetMemberCert().GetCertificate()
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("renew member certificate: the coordinator's answer: %w", err)
	}
	oldLeaf, err := x509.ParseCertificate(old.Certificate[0])
	if err != nil {
		return fmt.Errorf("renew member certificate: %w", err)
	}
	switch {
	case leaf.Subject.CommonName != id.ID:
		return fmt.Errorf("renew member certificate: the coordinator issued one for %q", leaf.Subject.CommonName)
	case !bytes.Equal(leaf.RawSubjectPublicKeyInfo, oldLeaf.RawSubjectPublicKeyInfo):
		return errors.New("renew member certificate: the coordinator issued one for another key")
	case !leaf.NotAfter.After(oldLeaf.NotAfter):
		return errors.New("renew member certificate: the new one ends no later than the old")
	}
	if err := tlsutil.VerifyFromCA([]*x509.Certificate{leaf}, id.CAs(), x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("renew member certificate: %w", err)
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "member.crt"), der); err != nil {
		return fmt.Errorf("renew member certificate: %w", err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf})
	return nil
}

type identityFile struct {
	ID        string `json:"id"`
	Office    string `json:"office"`
	Role      string `json:"role"`
	PolicyKey []byte `json:"policy_key"`
	GossipKey []byte `json:"gossip_key"`
}

// ErrNotEnrolled is returned by LoadIdentity when dir holds no identity.
var ErrNotEnrolled = errors.New("not enrolled")

// WithDefaultPort adds the coordinator's default port to an address without one.
func WithDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return net.JoinHostPort(addr, DefaultPort)
	}
	return addr
}

// Enroll exchanges a token for an identity. The private key never leaves
// the member; the coordinator signs a request for it. A coordinator that
// sees the same key and token again (the answer to an earlier attempt was
// lost) answers with the same member and spends no use of the token.
func Enroll(ctx context.Context, coordinator, fingerprint, token, hostname string, role wire.Role, key crypto.Signer) (*Identity, *wire.OfficeInfo, error) {
	tlsConf, err := tlsutil.PinnedConfig(fingerprint, wire.ALPNEnroll)
	if err != nil {
		return nil, nil, err
	}
	csr, err := tlsutil.NewCSR(key, hostname)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	gossipPub, gossipKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("create gossip key: %w", err)
	}
	addr := WithDefaultPort(coordinator)
	conn, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("enrol with coordinator %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "")
	resp, err := call(ctx, conn, &wire.Request{Body: &wire.Request_Enroll{Enroll: &wire.EnrollRequest{
		Token: token, Hostname: hostname, Role: role, Csr: csr, GossipKey: gossipPub,
	}}})
	if err != nil {
		return nil, nil, fmt.Errorf("enrol with coordinator %s: %w", addr, err)
	}
	er := resp.GetEnroll()
	if er == nil {
		return nil, nil, fmt.Errorf("enrol with coordinator %s: unexpected answer", addr)
	}
	if len(er.GetPolicyKey()) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("enrol with coordinator %s: policy key has %d bytes", addr, len(er.GetPolicyKey()))
	}
	cas, err := enrolledCAs(er, mustNormalize(fingerprint))
	if err != nil {
		return nil, nil, fmt.Errorf("enrol with coordinator %s: %w", addr, err)
	}
	leaf, err := x509.ParseCertificate(er.GetCertificate())
	if err != nil {
		return nil, nil, fmt.Errorf("enrol: certificate from coordinator: %w", err)
	}
	id := &Identity{
		ID:           er.GetMemberId(),
		Office:       er.GetOffice(),
		Role:         role,
		cert:         tls.Certificate{Certificate: [][]byte{er.GetCertificate()}, PrivateKey: key, Leaf: leaf},
		cas:          cas,
		PolicyKey:    ed25519.PublicKey(er.GetPolicyKey()),
		GossipKey:    er.GetGossipKey(),
		GossipSigner: gossipKey,
	}
	if sp := er.GetMemberPass(); sp != nil {
		pass, err := id.CheckPass(sp, time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("enrol with coordinator %s: %w", addr, err)
		}
		id.pass = pass
	}
	return id, er.GetOfficeInfo(), nil
}

// enrolledCAs is the CA certificates an enrolment's answer brings that the
// member may trust: the one with the pinned fingerprint, and every other
// certificate of the same CA (its key).
func enrolledCAs(er *wire.EnrollResponse, pinned string) ([]*x509.Certificate, error) {
	ders := append([][]byte{er.GetCaCertificate()}, er.GetCaCertificates()...)
	certs := make([]*x509.Certificate, 0, len(ders))
	var anchor *x509.Certificate
	for _, d := range ders[:min(len(ders), maxCAs)] {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("the CA certificate it sent: %w", err)
		}
		certs = append(certs, c)
		if tlsutil.Fingerprint(d) == pinned {
			anchor = c
		}
	}
	if anchor == nil {
		return nil, tlsutil.ErrWrongCA
	}
	var cas []*x509.Certificate
	for _, c := range certs {
		if tlsutil.SameCA(anchor, c) && !slices.ContainsFunc(cas, c.Equal) {
			cas = append(cas, c)
		}
	}
	return sortCAs(cas), nil
}

// CheckPass checks a pass the coordinator issued to this member: signed
// with the policy key, for this member, its role and its gossip key. It
// returns the pass encoded as the member announces it.
func (id *Identity) CheckPass(sp *wire.SignedMemberPass, now time.Time) ([]byte, error) {
	b, _, err := id.checkPass(sp, now)
	return b, err
}

func (id *Identity) checkPass(sp *wire.SignedMemberPass, now time.Time) ([]byte, *wire.MemberPass, error) {
	b, err := wire.EncodePass(sp)
	if err != nil {
		return nil, nil, err
	}
	p, err := wire.VerifyPass(id.PolicyKey, b, now)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case p.GetMemberId() != id.ID:
		return nil, nil, fmt.Errorf("member pass is for %s, not %s", p.GetMemberId(), id.ID)
	case p.GetRole() != id.Role:
		return nil, nil, fmt.Errorf("member pass is for a %s", p.GetRole())
	case len(id.GossipSigner) != ed25519.PrivateKeySize || !bytes.Equal(p.GetGossipKey(), id.GossipSigner.Public().(ed25519.PublicKey)):
		return nil, nil, errors.New("member pass names another gossip key")
	}
	return b, p, nil
}

// NeedsPass tells whether the member should ask for a pass: it has none,
// or one that does not fit it, or one that ends within
// wire.PassRenewBefore.
func (id *Identity) NeedsPass(now time.Time) bool {
	held := id.Pass()
	if len(held) == 0 {
		return true
	}
	sp, err := wire.DecodePass(held)
	if err != nil {
		return true
	}
	b, p, err := id.checkPass(sp, now)
	return err != nil || !bytes.Equal(b, held) || time.Unix(p.GetNotAfterUnix(), 0).Sub(now) < wire.PassRenewBefore
}

// TakePass checks a pass the coordinator issued and keeps it in dir,
// beside the identity. It returns the pass encoded as the member
// announces it, and whether it is new. A pass that checks but cannot be
// written is taken all the same (and an error returned): the member
// announces it, and asks again after a restart.
func (id *Identity) TakePass(dir string, sp *wire.SignedMemberPass, now time.Time) ([]byte, bool, error) {
	pass, err := id.CheckPass(sp, now)
	if err != nil {
		return nil, false, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if bytes.Equal(pass, id.pass) {
		return pass, false, nil
	}
	id.pass = pass
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, passFile), pass, 0o600); err != nil {
		return pass, true, fmt.Errorf("keep member pass on disk: %w", err)
	}
	return pass, true, nil
}

// GossipPublic is the public half of the member's gossip key.
func (id *Identity) GossipPublic() ed25519.PublicKey {
	if len(id.GossipSigner) != ed25519.PrivateKeySize {
		return nil
	}
	return id.GossipSigner.Public().(ed25519.PublicKey)
}

// The files of the gossip key, the pass and the CA's certificates, in the
// identity's directory.
const (
	gossipKeyFile = "gossip.key"
	passFile      = "member.pass"
	caFile        = "ca.crt"
)

func mustNormalize(fp string) string {
	n, _ := tlsutil.NormalizeFingerprint(fp)
	return n
}

// Save writes the identity into dir; the key is readable only by its owner.
func (id *Identity) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	cert := id.Certificate()
	if err := tlsutil.WriteKey(filepath.Join(dir, "member.key"), cert.PrivateKey); err != nil {
		return err
	}
	if err := tlsutil.WriteCert(filepath.Join(dir, "member.crt"), cert.Certificate[0]); err != nil {
		return err
	}
	if err := tlsutil.WriteCerts(filepath.Join(dir, caFile), id.CAChain()); err != nil {
		return err
	}
	if len(id.GossipSigner) == ed25519.PrivateKeySize {
		if err := tlsutil.WriteKey(filepath.Join(dir, gossipKeyFile), id.GossipSigner); err != nil {
			return err
		}
	}
	if pass := id.Pass(); len(pass) > 0 {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, passFile), pass, 0o600); err != nil {
			return fmt.Errorf("save member pass: %w", err)
		}
	}
	b, err := json.MarshalIndent(identityFile{ID: id.ID, Office: id.Office, Role: wire.RoleName(id.Role), PolicyKey: id.PolicyKey, GossipKey: id.GossipKey}, "", "  ")
	if err != nil {
		return err
	}
	// Written last: its presence means the identity is whole.
	return fsutil.WriteFileAtomic(filepath.Join(dir, "identity.json"), b, 0o600)
}

// LoadIdentity reads an identity saved in dir, or ErrNotEnrolled.
func LoadIdentity(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, "identity.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load identity %s: %w", dir, err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "member.crt"), filepath.Join(dir, "member.key"))
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", dir, err)
	}
	_, cas, err := tlsutil.ReadCerts(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", dir, err)
	}
	if len(f.PolicyKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("load identity %s: policy key is damaged", dir)
	}
	role := wire.Role_ROLE_AGENT
	if f.Role == "relay" {
		role = wire.Role_ROLE_RELAY
	}
	id := &Identity{ID: f.ID, Office: f.Office, Role: role, cert: cert, cas: sortCAs(cas[:min(len(cas), maxCAs)]), PolicyKey: f.PolicyKey, GossipKey: f.GossipKey}
	if id.GossipSigner, err = gossipSigner(dir); err != nil {
		return nil, fmt.Errorf("load identity %s: %w", dir, err)
	}
	// A pass that is missing or damaged is asked for again at check-in.
	if b, err := os.ReadFile(filepath.Join(dir, passFile)); err == nil && len(b) <= wire.MaxPass {
		id.pass = b
	}
	return id, nil
}

// gossipSigner loads the member's gossip key, making and keeping one for
// an identity saved before members had one.
func gossipSigner(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, gossipKeyFile)
	k, err := tlsutil.ReadKey(path)
	if err == nil {
		if ek, ok := k.(ed25519.PrivateKey); ok {
			return ek, nil
		}
		return nil, fmt.Errorf("%s holds no Ed25519 key (delete it: a new one is made)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (delete %s: a new one is made)", err, path)
	}
	_, ek, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("create gossip key: %w", err)
	}
	if err := tlsutil.WriteKey(path, ek); err != nil {
		return nil, err
	}
	// A pass for an older key is no use now.
	_ = os.Remove(filepath.Join(dir, passFile))
	return ek, nil
}

// LoadOrEnroll returns the identity in dir, enrolling first when there is none.
func LoadOrEnroll(ctx context.Context, dir, coordinator, fingerprint, token, hostname string, role wire.Role, log *slog.Logger) (*Identity, error) {
	id, err := LoadIdentity(dir)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, ErrNotEnrolled) {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("not enrolled and no enrollment token is configured: set enroll_token (outpost token create --office NAME)")
	}
	if fingerprint == "" {
		return nil, errors.New("not enrolled and no CA fingerprint is configured: set ca_fingerprint (printed by the coordinator at start, and in ca.fingerprint in its data directory)")
	}
	// The key is kept before the first attempt, so that a retry after a
	// lost answer is recognised as the same member.
	key, err := enrolmentKey(dir)
	if err != nil {
		return nil, err
	}
	id, _, err = Enroll(ctx, coordinator, fingerprint, token, hostname, role, key)
	if err != nil {
		return nil, err
	}
	if err := id.Save(dir); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(dir, enrolKeyFile)) // member.key holds it now
	log.Info("enrolled", "member", id.ID, "office", id.Office)
	return id, nil
}

// enrolKeyFile is the key of an enrolment in progress.
const enrolKeyFile = "enrol.key"

// enrolmentKey loads the key of an enrolment in progress, or makes and
// keeps a new one.
func enrolmentKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, enrolKeyFile)
	if k, err := tlsutil.ReadKey(path); err == nil {
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (delete %s to enrol with a new key)", err, path)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("enrolment key: %w", err)
	}
	k, err := tlsutil.NewKey()
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if err := tlsutil.WriteKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// call runs one exchange on a new stream.
func call(ctx context.Context, conn *quic.Conn, req *wire.Request) (*wire.Response, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	// The answer is read by its length, not to the stream's end: stop
	// reading after it, so that the stream is released on this side too.
	defer str.CancelRead(0)
	if d, ok := ctx.Deadline(); ok {
		str.SetDeadline(d)
	} else {
		str.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if err := wire.WriteMsg(str, req); err != nil {
		str.CancelWrite(1)
		return nil, err
	}
	// The request is whole: its end goes with it, so that the coordinator
	// sees the stream's end and releases it.
	str.Close()
	var resp wire.Response
	if err := wire.ReadMsg(str, &resp); err != nil {
		return nil, err
	}
	if err := resp.AsError(); err != nil {
		return nil, err
	}
	return &resp, nil
}

// PushHandler takes requests the coordinator opens toward the member.
type PushHandler func(ctx context.Context, req *wire.Request) *wire.Response

// Client keeps one QUIC connection to the coordinator open, redialling
// with backoff and jitter, and serves the coordinator's pushes on it.
type Client struct {
	id                     *Identity
	addr                   string
	push                   PushHandler
	log                    *slog.Logger
	tls                    *tls.Config
	minBackoff, maxBackoff time.Duration
	// stable is how long a connection must serve for the next one to be
	// dialled without backoff (stableConn; tests shorten it).
	stable time.Duration
	// watchEvery is how often the host's addresses and clock are looked
	// at (watchHost); addrs and wall are what is looked at (tests fake
	// them).
	watchEvery time.Duration
	addrs      func() string
	wall       func() time.Time
	// nudge says the host's network changed or it woke: a redial waiting
	// out its backoff goes now.
	nudge chan struct{}

	mu      sync.Mutex
	conn    *quic.Conn
	changed chan struct{} // closed and replaced whenever conn changes
}

// NewClient builds a client; Run connects.
func NewClient(id *Identity, coordinator string, push PushHandler, logger *slog.Logger) (*Client, error) {
	if _, end := id.CertDue(time.Now()); !end.IsZero() && time.Now().After(end) {
		logger.Error("this member's certificate ended: the coordinator refuses it until it enrols again (remove its identity directory and set enroll_token)",
			"member", id.ID, "ended", end.UTC().Format(time.DateOnly))
	}
	tlsConf, err := tlsutil.MemberConfig(id.ClientCertificate, id.CAs, wire.ALPNMember)
	if err != nil {
		return nil, err
	}
	return &Client{
		id: id, addr: WithDefaultPort(coordinator), push: push, tls: tlsConf,
		log:        logger.With("component", "coordinator-link"),
		minBackoff: 500 * time.Millisecond, maxBackoff: 30 * time.Second,
		stable:     stableConn,
		watchEvery: watchEvery, addrs: localAddrs, wall: func() time.Time { return time.Now().Round(0) },
		nudge:   make(chan struct{}, 1),
		changed: make(chan struct{}),
	}, nil
}

// SetBackoff changes the redial backoff bounds (tests use short ones).
func (c *Client) SetBackoff(first, most time.Duration) {
	c.minBackoff, c.maxBackoff = max(first, time.Millisecond), max(most, first, time.Millisecond)
}

// The member's side of the connection's timers. A member that hears
// nothing for idleTimeout (counted while the host is awake) drops the
// connection; it sends a keep-alive after keepAlive of silence, well
// within the 30 s after which many NATs forget a UDP mapping.
const (
	idleTimeout = 60 * time.Second
	keepAlive   = 15 * time.Second
)

// Run keeps the connection until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.minBackoff
	removed := false           // the coordinator said this member is not enrolled
	var trouble logging.Outage // failed dials, or connections ended at once, since one served
	var wg sync.WaitGroup
	defer wg.Wait()
	// A transport of its own, with connection ids: quic.DialAddr's has
	// none, and without them a stateless reset from a restarted
	// coordinator cannot be told apart from the connection's own packets,
	// so the member would wait out the idle timeout (a minute) instead of
	// redialling at once.
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return fmt.Errorf("open a UDP socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp, ConnectionIDLength: 8}
	defer udp.Close()
	defer tr.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watchHost(wctx)
	}()
	for ctx.Err() == nil {
		var conn *quic.Conn
		raddr, err := c.resolve(ctx)
		if err == nil {
			conn, err = tr.Dial(ctx, raddr, c.tls, &quic.Config{
				HandshakeIdleTimeout: 10 * time.Second,
				MaxIdleTimeout:       idleTimeout,
				KeepAlivePeriod:      keepAlive,
				MaxIncomingStreams:   32,
			})
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wait := jitter(backoff)
			trouble.Failed(c.log, time.Now(), "coordinator unreachable; retrying", "coordinator still unreachable; retrying",
				"addr", c.addr, "in", wait.Round(time.Millisecond), "err", err)
			c.wait(ctx, wait, true)
			backoff = min(backoff*2, c.maxBackoff)
			continue
		}
		c.setConn(conn)
		c.log.Info("connected to coordinator", "addr", c.addr)
		since := time.Now()
		for {
			str, err := conn.AcceptStream(ctx)
			if err != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.servePush(ctx, str)
			}()
		}
		c.setConn(nil)
		conn.CloseWithError(0, "")
		if ctx.Err() != nil {
			break
		}
		cause := context.Cause(conn.Context())
		var appErr *quic.ApplicationError
		isAppErr := errors.As(cause, &appErr)
		if isAppErr && !appErr.Remote && appErr.ErrorCode == closeSlept {
			// watchHost closed it: the host slept for longer than the
			// connection could outlive. Straight back: hosts wake one by
			// one, not all at once.
			c.log.Info("the host slept: the connection to the coordinator was dead; redialling", "addr", c.addr)
			trouble.Over()
			backoff = c.minBackoff
			continue
		}
		if time.Since(since) >= c.stable {
			// A connection that served: the coordinator restarted or
			// shut down, the network moved. Back soon, but not at once:
			// a coordinator that goes away loses every member at the same
			// moment, and 20,000 of them redialling in the same
			// millisecond (and retransmitting their handshakes in step
			// while it is down) is a flood when it comes back.
			wait := spread(min(lostSpread*c.minBackoff, c.maxBackoff))
			c.log.Warn("connection to coordinator lost", "addr", c.addr, "redial_in", wait.Round(time.Millisecond), "err", cause)
			trouble.Over()
			backoff = c.minBackoff
			c.wait(ctx, wait, true)
			continue
		}
		// The coordinator ended the connection at once: this member was
		// removed, or another computer with its identity (a cloned disk,
		// a restored snapshot) replaces it each time it connects.
		// Redialling at once would be a handshake and a log line on both
		// sides as fast as they go, for good.
		if isAppErr && appErr.Remote && appErr.ErrorCode == wire.CloseNotEnrolled {
			if !removed {
				c.log.Error("the coordinator says this member is not enrolled any more (it was removed): it keeps its last policy; "+
					"to bring it back, enrol it again (remove its identity directory and set enroll_token)", "member", c.id.ID)
			}
			removed = true
		}
		if removed {
			backoff = removedBackoff
		}
		wait := jitter(backoff)
		trouble.Failed(c.log, time.Now(), "connection to coordinator ended at once; retrying", "connections to coordinator still end at once; retrying",
			"addr", c.addr, "in", wait.Round(time.Millisecond), "err", cause)
		c.wait(ctx, wait, !removed)
		if !removed {
			backoff = min(backoff*2, c.maxBackoff)
		}
	}
	return nil
}

// resolve looks the coordinator's address up again at each dial (it may
// move), giving up when ctx ends rather than after the resolver's own
// timeouts.
func (c *Client) resolve(ctx context.Context) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil {
		return nil, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	// IPv4 first, as net.ResolveUDPAddr does.
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		return cmp.Compare(boolInt(!a.Unmap().Is4()), boolInt(!b.Unmap().Is4()))
	})
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p))), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stableConn is how long a connection must serve for the next one to be
// dialled without backoff; removedBackoff is the wait between dials of a
// member the coordinator removed; lostSpread (times the first backoff) is
// how far apart members that lose their connections at the same moment
// redial.
const (
	stableConn     = 10 * time.Second
	removedBackoff = 10 * time.Minute
	lostSpread     = 10
)

// jitter is a wait of half to one and a half times d: a fleet coming back
// after a coordinator restart does not arrive all at once.
func jitter(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(d))) + d/2
}

// spread is a wait of anything up to d.
func spread(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// wait waits d, or until ctx ends, or, when nudged, until the host's
// network changes or it wakes (watchHost): a laptop that comes back to a
// network redials then, not after what is left of its backoff.
func (c *Client) wait(ctx context.Context, d time.Duration, nudged bool) {
	var nudge <-chan struct{}
	if nudged {
		// One from while the dial that failed was under way is kept: the
		// network that came up meanwhile is worth a dial now.
		nudge = c.nudge
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-nudge:
		c.log.Debug("the host's network changed or it woke: redialling the coordinator now", "addr", c.addr)
	}
}

// watchEvery is how often watchHost looks; sleptAfter is the gap between
// the wall clock and the clock of the host's awake time from which it
// takes the host to have slept.
const (
	watchEvery = 5 * time.Second
	sleptAfter = 10 * time.Second
	// closeSlept closes, on this side, a connection the host slept
	// through.
	closeSlept quic.ApplicationErrorCode = 0x100
)

// watchHost tells Run when the host's addresses change or it wakes from
// sleep. Go's timers, and so QUIC's idle timeout, count only the time the
// host is awake: a laptop that slept overnight holds a connection the
// coordinator dropped hours ago, and would find out only after a minute
// of its own awake time (or when a stateless reset gets through), with
// every call meanwhile hanging. A host that slept for longer than the
// idle timeout closes it at once: the coordinator, whose clock ran, has
// dropped it.
func (c *Client) watchHost(ctx context.Context) {
	t := time.NewTicker(c.watchEvery)
	defer t.Stop()
	addrs, mono, wall := c.addrs(), time.Now(), c.wall()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nowAddrs, nowMono, nowWall := c.addrs(), time.Now(), c.wall()
		slept := nowWall.Sub(wall) - nowMono.Sub(mono)
		moved := nowAddrs != addrs
		addrs, mono, wall = nowAddrs, nowMono, nowWall
		if slept >= idleTimeout {
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			if conn != nil {
				c.log.Debug("the host slept longer than the connection outlives", "slept", slept.Round(time.Second))
				conn.CloseWithError(closeSlept, "the member's host slept")
			}
		}
		if moved || slept >= sleptAfter {
			select {
			case c.nudge <- struct{}{}:
			default:
			}
		}
	}
}

// localAddrs is the host's addresses, as one string that changes when
// they do ("" when they cannot be read).
func localAddrs() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func (c *Client) servePush(ctx context.Context, str *quic.Stream) {
	defer str.Close()
	str.SetDeadline(time.Now().Add(30 * time.Second))
	var req wire.Request
	if err := wire.ReadMsg(str, &req); err != nil {
		return
	}
	resp := c.push(ctx, &req)
	if resp == nil {
		resp = &wire.Response{Body: &wire.Response_Ack{Ack: &wire.Ack{}}}
	}
	_ = wire.WriteMsg(str, resp)
	// The request was read by its length, not to its end: give the stream
	// back, or every push holds one of the streams this member lets the
	// coordinator open, and pushes stall after MaxIncomingStreams of them.
	str.CancelRead(0)
}

func (c *Client) setConn(conn *quic.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	close(c.changed)
	c.changed = make(chan struct{})
}

// Connected reports whether the connection is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// ErrOffline is returned by Call when no connection came up in time.
var ErrOffline = errors.New("coordinator is not reachable")

// Call sends one request, waiting for the connection until ctx ends.
func (c *Client) Call(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	for {
		c.mu.Lock()
		conn, changed := c.conn, c.changed
		c.mu.Unlock()
		if conn != nil {
			return call(ctx, conn, req)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%s)", ErrOffline, c.addr)
		case <-changed:
		}
	}
}

// EnrolRequest is what LoadOrEnrollRetrying needs.
type EnrolRequest struct {
	Dir, Coordinator, Fingerprint, Token, Hostname string
	Role                                           wire.Role
	// FirstBackoff is the first wait after an unreachable coordinator; it
	// doubles up to 30 s.
	FirstBackoff time.Duration
}

// LoadOrEnrollRetrying is LoadOrEnroll that keeps trying while the
// coordinator is unreachable (each attempt gets a minute); a refused
// token, or any other answer, is final.
func LoadOrEnrollRetrying(ctx context.Context, r EnrolRequest, log *slog.Logger) (*Identity, error) {
	backoff := r.FirstBackoff
	if backoff <= 0 {
		backoff = time.Second
	}
	for {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		id, err := LoadOrEnroll(actx, r.Dir, r.Coordinator, r.Fingerprint, r.Token, r.Hostname, r.Role, log)
		cancel()
		if err == nil {
			return id, nil
		}
		var re *wire.RemoteError
		var ne net.Error
		if errors.Is(err, tlsutil.ErrWrongCA) {
			// Not worth a retry, and told without the QUIC error around it.
			return nil, fmt.Errorf("enrol with coordinator %s: %w: check ca_fingerprint in the config against the coordinator's <data-dir>/ca.fingerprint",
				r.Coordinator, tlsutil.ErrWrongCA)
		}
		if errors.As(err, &re) || ctx.Err() != nil || !(errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)) {
			return nil, err
		}
		log.Warn("enrollment: coordinator unreachable; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
