// Package ca is the coordinator's certificate authority: it is created on
// first start, issues the coordinator's QUIC server certificate and the
// client certificates of enrolled members, and holds the Ed25519 key that
// signs policy. Its private keys never leave the data directory.
//
// The CA's certificate is renewed with the same subject and key when
// less than RenewBefore of it is left (at start, and while the
// coordinator runs); the earlier ones are kept and sent along with every
// certificate the coordinator presents, and members, installers and CLIs
// trust the key (tlsutil.VerifyFromCA), so nothing has to enrol again.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

const (
	caLifetime = 10 * 365 * 24 * time.Hour
	// DefaultRenewBefore is how long before its end the CA certificate is
	// renewed: members learn the new one at their next check-in, and a
	// member away for less than this never sees the old one end.
	DefaultRenewBefore = 3 * 365 * 24 * time.Hour
	// MaxRenewBefore bounds it: a certificate renewed once must not be
	// due again at once.
	MaxRenewBefore = caLifetime / 2
	serverLifetime = 365 * 24 * time.Hour
	memberLifetime = 365 * 24 * time.Hour
)

// CA holds the coordinator's keys.
type CA struct {
	key       crypto.Signer
	policyKey ed25519.PrivateKey

	dir         string   // where the certificates are kept
	hosts       []string // the server certificate's extra hosts
	renewBefore time.Duration
	mu          sync.Mutex
	// cert is the CA's certificate; earlier are the ones it had before
	// for the same key, newest first.
	cert    *x509.Certificate
	earlier []*x509.Certificate
	// caRenewFailed is when renewing the CA certificate last failed.
	caRenewFailed time.Time
	log           *slog.Logger // nil: renewals are not logged
	// server is the coordinator's TLS certificate; renewFailed is when
	// renewing it last failed (tried again an hour later).
	server      tls.Certificate
	renewFailed time.Time
}

// serverRenewBefore is how long before its end the server certificate is
// replaced: at start, and by ServerCertificate while the coordinator runs.
const serverRenewBefore = 30 * 24 * time.Hour

// maxEarlier bounds the earlier certificates kept: one renewal in seven
// years leaves far fewer, a clock that jumps about a few more.
const maxEarlier = 8

// The files of the CA's certificates in its directory.
const (
	certFile    = "ca.crt"
	earlierFile = "ca-earlier.crt"
)

// LoadOrCreate opens the CA in dir, creating keys and certificates on first
// start. The server certificate is renewed when it is within 30 days of
// expiry, at start or while the coordinator runs; extraHosts are added to
// it as SANs. The CA's certificate is renewed when less than renewBefore
// (0: DefaultRenewBefore) of it is left, and the renewal logged to log
// (nil: not logged).
func LoadOrCreate(dir string, extraHosts []string, renewBefore time.Duration, log *slog.Logger) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	if renewBefore <= 0 {
		renewBefore = DefaultRenewBefore
	}
	if renewBefore > MaxRenewBefore {
		return nil, fmt.Errorf("renew the CA's certificate %v before its end: at most %v", renewBefore, MaxRenewBefore)
	}
	c := &CA{dir: dir, hosts: extraHosts, renewBefore: renewBefore, log: log}
	caCrt, caKey := filepath.Join(dir, certFile), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(caKey); errors.Is(err, os.ErrNotExist) {
		if err := createCA(caCrt, caKey); err != nil {
			return nil, err
		}
	}
	var err error
	if c.key, err = tlsutil.ReadKey(caKey); err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if _, c.cert, err = tlsutil.ReadCert(caCrt); err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !bytes.Equal(c.cert.RawSubjectPublicKeyInfo, mustPublic(c.key)) {
		return nil, fmt.Errorf("load CA: %s is not the certificate of %s", caCrt, caKey)
	}
	if err := c.loadEarlier(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	err = c.renewCAIfDue(time.Now())
	if err == nil {
		err = c.loadServer(dir, extraHosts)
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := c.loadPolicyKey(filepath.Join(dir, "policy.key")); err != nil {
		return nil, err
	}
	return c, nil
}

// caTemplate is a certificate of the CA made at now, for caLifetime; its
// subject is the caller's to set.
func caTemplate(now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
}

func createCA(crtPath, keyPath string) error {
	key, err := tlsutil.NewKey()
	if err != nil {
		return fmt.Errorf("create CA key: %w", err)
	}
	tmpl := caTemplate(time.Now())
	tmpl.Subject = pkix.Name{CommonName: "Outpost CA", Organization: []string{"Outpost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	// Certificate first: a crash between the two leaves no key without a
	// certificate, and the next start creates both again.
	if err := tlsutil.WriteCert(crtPath, der); err != nil {
		return err
	}
	return tlsutil.WriteKey(keyPath, key)
}

func mustPublic(key crypto.Signer) []byte {
	b, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil
	}
	return b
}

// loadEarlier reads the CA's earlier certificates, keeping those of its
// key that are not the current one (a renewal cut short by a crash can
// have written the current one there too).
func (c *CA) loadEarlier() error {
	_, certs, err := tlsutil.ReadCerts(filepath.Join(c.dir, earlierFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load CA: %w", err)
	}
	for _, e := range certs {
		if tlsutil.SameCA(c.cert, e) && !e.Equal(c.cert) && !slices.ContainsFunc(c.earlier, e.Equal) {
			c.earlier = append(c.earlier, e)
		}
	}
	return nil
}

// dueLocked tells whether the CA's certificate is to be renewed: less than
// renewBefore of it is left, or it is not valid yet — made while the clock
// was wrong (far ahead), it would never come due, and verify nothing once
// the earlier ones end. Called with mu held.
func (c *CA) dueLocked(now time.Time) bool {
	return c.cert.NotAfter.Sub(now) < c.renewBefore || now.Before(c.cert.NotBefore)
}

// renewCAIfDue renews the CA's certificate when less than renewBefore of
// it is left: same subject, same key (so every certificate issued under
// the old one verifies under the new), ten more years. The old one is
// written to the earlier certificates before the new one replaces it, so
// that a crash between the two loses neither. Called with mu held.
func (c *CA) renewCAIfDue(now time.Time) error {
	if !c.dueLocked(now) {
		return nil
	}
	old := c.cert
	tmpl := caTemplate(now)
	tmpl.RawSubject, tmpl.SubjectKeyId = old.RawSubject, old.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, c.key.Public(), c.key)
	if err != nil {
		return fmt.Errorf("renew CA certificate: %w", err)
	}
	renewed, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("renew CA certificate: %w", err)
	}
	if !tlsutil.SameCA(old, renewed) {
		return errors.New("renew CA certificate: the new certificate is not one of the same CA")
	}
	earlier := append([]*x509.Certificate{old}, c.earlier...)
	earlier = earlier[:min(len(earlier), maxEarlier)]
	if err := tlsutil.WriteCerts(filepath.Join(c.dir, earlierFile), tlsutil.DERs(earlier)); err != nil {
		return fmt.Errorf("renew CA certificate: %w", err)
	}
	if err := tlsutil.WriteCert(filepath.Join(c.dir, certFile), der); err != nil {
		return fmt.Errorf("renew CA certificate: %w", err)
	}
	c.cert, c.earlier = renewed, earlier
	if c.log != nil {
		c.log.Info("the CA's certificate was renewed, with the same key: members learn the new one at their next check-in, "+
			"and installers and CLIs that pin an earlier fingerprint go on working",
			"ca_fingerprint", tlsutil.Fingerprint(der), "was", tlsutil.Fingerprint(old.Raw), "ca_ends", renewed.NotAfter.UTC().Format(time.DateOnly))
	}
	// The server certificate's chain carries the CA's certificates.
	if c.server.Leaf != nil {
		c.server.Certificate = append([][]byte{c.server.Certificate[0]}, c.chainLocked()...)
	}
	return nil
}

// chainLocked is the CA's certificates, the current one first: what is
// sent along with every certificate the CA issues, so that whoever holds
// or pins any of them verifies it. Called with mu held.
func (c *CA) chainLocked() [][]byte {
	return append([][]byte{c.cert.Raw}, tlsutil.DERs(c.earlier)...)
}

// Chain is the CA's certificates, the current one first.
func (c *CA) Chain() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chainLocked()
}

// current is the CA's certificate as it is now.
func (c *CA) current() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// loadServer loads or issues the server certificate. Called with mu held.
func (c *CA) loadServer(dir string, hosts []string) error {
	crtPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if cert, err := tls.LoadX509KeyPair(crtPath, keyPath); err == nil {
		leaf, perr := x509.ParseCertificate(cert.Certificate[0])
		// One made while the clock was far ahead is not valid yet, and
		// members would refuse it until then: made again, as the CA's
		// own is (dueLocked).
		if perr == nil && time.Until(leaf.NotAfter) > serverRenewBefore && !time.Now().Before(leaf.NotBefore) &&
			leaf.CheckSignatureFrom(c.cert) == nil && sameHosts(leaf, hosts) {
			c.server = tls.Certificate{Certificate: append([][]byte{cert.Certificate[0]}, c.chainLocked()...), PrivateKey: cert.PrivateKey, Leaf: leaf}
			return nil
		}
	}
	key, err := tlsutil.NewKey()
	if err != nil {
		return fmt.Errorf("create server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: tlsutil.ServerName},
		DNSNames:     []string{tlsutil.ServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     c.withinLocked(now.Add(serverLifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if err := tlsutil.WriteKey(keyPath, key); err != nil {
		return err
	}
	if err := tlsutil.WriteCert(crtPath, der); err != nil {
		return err
	}
	leaf, _ := x509.ParseCertificate(der)
	c.server = tls.Certificate{Certificate: append([][]byte{der}, c.chainLocked()...), PrivateKey: key, Leaf: leaf}
	return nil
}

func sameHosts(leaf *x509.Certificate, hosts []string) bool {
	have := map[string]bool{}
	for _, d := range leaf.DNSNames {
		have[d] = true
	}
	for _, ip := range leaf.IPAddresses {
		have[ip.String()] = true
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if h != "" && !have[h] {
			return false
		}
	}
	return true
}

func (c *CA) loadPolicyKey(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return fmt.Errorf("create policy key: %w", gerr)
		}
		if err := fsutil.WriteFileAtomic(path, priv.Seed(), 0o600); err != nil {
			return err
		}
		c.policyKey = priv
		return nil
	}
	if err != nil {
		return fmt.Errorf("load policy key: %w", err)
	}
	if len(b) != ed25519.SeedSize {
		return fmt.Errorf("load policy key %s: %d bytes, want %d", path, len(b), ed25519.SeedSize)
	}
	c.policyKey = ed25519.NewKeyFromSeed(b)
	return nil
}

// CertDER is the CA's certificate as it is now.
func (c *CA) CertDER() []byte { return c.current().Raw }

// Fingerprint is what installers pin: the current certificate's. Those
// of earlier ones go on working (Chain sends them along).
func (c *CA) Fingerprint() string { return tlsutil.Fingerprint(c.CertDER()) }

// within keeps the end of a certificate the CA issues within the CA's
// own: a certificate is worth nothing past it, and one that says
// otherwise would not be renewed in time.
func (c *CA) within(end time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.withinLocked(end)
}

func (c *CA) withinLocked(end time.Time) time.Time {
	if end.After(c.cert.NotAfter) {
		return c.cert.NotAfter
	}
	return end
}

// RenewsFrom is when the CA's current certificate comes due for renewal.
func (c *CA) RenewsFrom() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert.NotAfter.Add(-c.renewBefore)
}

// NotAfter is when the CA's current certificate ends; it is renewed
// before then.
func (c *CA) NotAfter() time.Time { return c.current().NotAfter }

// ServerCertificate is the QUIC server's chain (leaf, then Chain),
// renewed within serverRenewBefore of its end: a coordinator that runs for
// a year without a restart would otherwise go on showing a certificate
// past its end, and every member's connection would fail. The CA's own
// certificate is renewed here too when it is due.
func (c *CA) ServerCertificate() tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.dueLocked(now) && now.Sub(c.caRenewFailed) > time.Hour {
		if err := c.renewCAIfDue(now); err != nil {
			c.caRenewFailed = now // tried again in an hour; the current one serves meanwhile
		}
	}
	// One that ends with the CA cannot be renewed for longer; one not
	// valid yet (the clock was set back) is made again at once.
	l := c.server.Leaf
	due := l != nil && (time.Until(l.NotAfter) < serverRenewBefore && l.NotAfter.Before(c.cert.NotAfter) || time.Now().Before(l.NotBefore))
	if due && time.Since(c.renewFailed) > time.Hour {
		if err := c.loadServer(c.dir, c.hosts); err != nil {
			c.renewFailed = time.Now() // the old one serves meanwhile
		}
	}
	return c.server
}

// Pool holds the CA's certificates, for verifying members.
func (c *CA) Pool() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	for _, e := range c.earlier {
		p.AddCert(e)
	}
	return p
}

// PolicyKey signs policy.
func (c *CA) PolicyKey() ed25519.PrivateKey { return c.policyKey }

// IssueMember signs a member's certificate request; the certificate names
// the member by id and can only authenticate a client.
func (c *CA) IssueMember(csrDER []byte, memberID string) ([]byte, error) {
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: memberID},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     c.within(now.Add(memberLifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.current(), csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("issue member certificate: %w", err)
	}
	return der, nil
}

// parseCSR is a certificate request the CA may sign: well formed, signed
// by its key, and for a key that holds. Only its key is used: the names
// and extensions it asks for are not copied into what the CA issues.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("certificate request is malformed: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	if err := strongKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return csr, nil
}

// strongKey accepts the keys the CA certifies: ECDSA on P-256 (what
// Outpost makes), P-384 or P-521, Ed25519, and RSA of 2048 bits or more.
// A member's identity is worth what its key is.
func strongKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA key on %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return fmt.Errorf("RSA key of %d bits: want %d or more", n, minRSABits)
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T: want ECDSA P-256", pub)
}

// minRSABits is the smallest RSA key the CA certifies.
const minRSABits = 2048

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// ServingLifetime is how long a relay's serving certificate is valid;
// relays renew it once two thirds of that have passed.
const ServingLifetime = 90 * 24 * time.Hour

// IssueServing signs a relay's request for an HTTPS serving certificate
// valid for hosts (DNS names or IPs, never a wildcard:
// tlsutil.CertifiableHost) until lifetime has passed. It never names the
// coordinator (tlsutil.ServerName), which members and the CLI trust from
// this CA alone: a relay must not be able to pose as it.
func (c *CA) IssueServing(csrDER []byte, memberID string, hosts []string, lifetime time.Duration) ([]byte, error) {
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, errors.New("a serving certificate needs at least one host")
	}
	if lifetime <= 0 {
		lifetime = ServingLifetime
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], OrganizationalUnit: []string{tlsutil.RelayOU + memberID}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     c.within(now.Add(lifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !tlsutil.CertifiableHost(h) {
			return nil, fmt.Errorf("host %q: a serving certificate names hosts (DNS names or IPs), never a wildcard", h)
		}
		if strings.EqualFold(h, tlsutil.ServerName) {
			return nil, fmt.Errorf("host %q is reserved for the coordinator", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.current(), csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("issue serving certificate: %w", err)
	}
	return der, nil
}
