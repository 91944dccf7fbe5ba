// Package tlsutil builds the TLS configurations of Outpost's QUIC links
// (the coordinator's server side, a member's first dial pinned to the CA's
// fingerprint, and the mutual TLS a member uses once enrolled) and of its
// HTTPS (relays' content and the admin API: certificates from files, the
// hosts a relay's serving certificate may name, and the clients that trust
// the coordinator's CA). It holds no CA key: issuing certificates is the
// coordinator's alone.
package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// ServerName is the name every coordinator certificate carries and every
// member asks for, so members can dial the coordinator by any address.
const ServerName = "outpost-coordinator"

// Fingerprint returns "sha256:<hex>" of a certificate's DER bytes: what an
// installer pins before the first dial.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts "sha256:<hex>" or bare hex, with or without
// colons, and returns the canonical form.
func NormalizeFingerprint(s string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	h = strings.ReplaceAll(h, ":", "")
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("CA fingerprint %q: want sha256: and 64 hex digits", s)
	}
	return "sha256:" + h, nil
}

// PinnedConfig is the client side of enrollment: the member has no CA
// certificate yet, only its fingerprint, so the chain the server presents
// must contain a CA with that fingerprint that signed the leaf, which
// must be the coordinator's (ServerName, server auth, not a relay's
// serving certificate).
func PinnedConfig(fingerprint string, alpn string) (*tls.Config, error) {
	want, err := NormalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{alpn},
		ServerName:         ServerName,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, want)
		},
	}, nil
}

func verifyPinned(chain []*x509.Certificate, want string) error {
	if len(chain) == 0 {
		return errors.New("coordinator presented no certificate")
	}
	if IsRelayCert(chain[0]) {
		return errNotCoordinator
	}
	err := VerifyPinned(chain, want, x509.VerifyOptions{DNSName: ServerName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	switch {
	case errors.Is(err, ErrWrongCA):
		return fmt.Errorf("%w: check ca_fingerprint in the config against the coordinator's <data-dir>/ca.fingerprint", err)
	case err != nil:
		return fmt.Errorf("coordinator certificate is not issued by the pinned CA: %w", err)
	}
	return nil
}

// errNotCoordinator is a relay's serving certificate where the
// coordinator's is expected: the CA issues both, and names the
// coordinator in a relay's never, but a relay's key is not the
// coordinator's to trust.
var errNotCoordinator = errors.New("the server presented a relay's serving certificate, not the coordinator's")

// ErrWrongCA is a coordinator whose CA is not the one pinned: a setting
// to correct, not a network to wait for.
var ErrWrongCA = errors.New("the coordinator's CA does not match the pinned fingerprint")

// MemberConfig is the mutual-TLS client side for an enrolled member,
// showing the certificate cert returns at each handshake. The
// coordinator's certificate must verify under the CA the member trusts,
// as cas returns it at each handshake (a renewed CA certificate the
// member learns is trusted from then on; VerifyFromCA), and not be a
// relay's serving certificate, which the same CA issues.
func MemberConfig(cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), cas func() []*x509.Certificate, alpn string) (*tls.Config, error) {
	if len(cas()) == 0 {
		return nil, errors.New("no CA certificate to trust")
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		NextProtos:           []string{alpn},
		ServerName:           ServerName,
		InsecureSkipVerify:   true, // replaced by VerifyConnection below
		GetClientCertificate: cert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && IsRelayCert(cs.PeerCertificates[0]) {
				return errNotCoordinator
			}
			if err := VerifyFromCA(cs.PeerCertificates, cas(), x509.VerifyOptions{DNSName: ServerName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the coordinator's certificate: %w", err)
			}
			return nil
		},
	}, nil
}

// NewKey generates a member's or server's private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewCSR builds a certificate request for key with the given common name.
func NewCSR(key crypto.Signer, commonName string) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName},
	}, key)
}

// WriteKey stores a private key as PEM, readable only by its owner.
func WriteKey(path string, key crypto.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// ReadKey loads a PEM private key written by WriteKey.
func ReadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read key %s: unsupported key type %T", path, k)
	}
	return s, nil
}

// WriteCert stores a DER certificate as PEM.
func WriteCert(path string, der []byte) error {
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// ReadCert loads a PEM certificate and returns its DER bytes and parsed form.
func ReadCert(path string) ([]byte, *x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("read certificate %s: not a PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate %s: %w", path, err)
	}
	return blk.Bytes, c, nil
}
