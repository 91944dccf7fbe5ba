package tlsutil

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// The coordinator's CA is trusted by its key, not by one certificate of
// it: the coordinator renews its CA certificate with the same subject and
// key before it ends (coordinator/internal/ca), and sends every
// certificate it has held for that key along with what it presents. A
// member that still holds an earlier certificate, or an installer or CLI
// that pins an earlier one's fingerprint, goes on trusting what the key
// signs: nobody without the key can make a certificate that verifies
// under it.

// SameCA says whether c is a certificate of the CA that anchor is: a
// self-signed CA certificate with anchor's subject and key.
func SameCA(anchor, c *x509.Certificate) bool {
	return c != nil && anchor != nil && c.IsCA &&
		bytes.Equal(c.RawSubject, anchor.RawSubject) &&
		bytes.Equal(c.RawSubjectPublicKeyInfo, anchor.RawSubjectPublicKeyInfo) &&
		c.CheckSignatureFrom(c) == nil
}

// CARoots is what a chain is verified against: the anchors, and each
// certificate presented (sent along by a peer) that is a certificate of
// one of them. A renewed CA certificate a peer sends thus stands in for
// an anchor that has ended.
func CARoots(anchors, presented []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, a := range anchors {
		pool.AddCert(a)
	}
	for _, c := range presented {
		for _, a := range anchors {
			if SameCA(a, c) {
				pool.AddCert(c)
				break
			}
		}
	}
	return pool
}

// VerifyFromCA verifies chain's first certificate against CARoots(anchors,
// the rest of chain) with opts, whose Roots and Intermediates it sets
// (Outpost's CA issues its leaves directly).
func VerifyFromCA(chain, anchors []*x509.Certificate, opts x509.VerifyOptions) error {
	if len(chain) == 0 {
		return errors.New("no certificate presented")
	}
	if len(anchors) == 0 {
		return errors.New("no CA certificate to verify against")
	}
	opts.Roots, opts.Intermediates = CARoots(anchors, chain[1:]), nil
	_, err := chain[0].Verify(opts)
	return err
}

// VerifyPinned verifies chain's first certificate as issued by the CA
// one of whose certificates, sent along in chain, has the fingerprint
// want (canonical, from NormalizeFingerprint). ErrWrongCA when none has.
func VerifyPinned(chain []*x509.Certificate, want string, opts x509.VerifyOptions) error {
	if len(chain) == 0 {
		return errors.New("no certificate presented")
	}
	for _, ca := range chain {
		if Fingerprint(ca.Raw) == want {
			return VerifyFromCA(chain, []*x509.Certificate{ca}, opts)
		}
	}
	return fmt.Errorf("%w %s", ErrWrongCA, want)
}

// ParseCerts parses DER certificates, in order.
func ParseCerts(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// DERs is certs in DER, in order.
func DERs(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

// PEMCertDERs is the DER of every CERTIFICATE block in b, in order;
// other blocks are skipped.
func PEMCertDERs(b []byte) [][]byte {
	var ders [][]byte
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return ders
		}
		if blk.Type == "CERTIFICATE" {
			ders = append(ders, blk.Bytes)
		}
	}
}

// maxCertsFile bounds a certificate bundle read from disk.
const maxCertsFile = 1 << 20

// WriteCerts stores certificates in one PEM file, in order, atomically.
func WriteCerts(path string, ders [][]byte) error {
	var b bytes.Buffer
	for _, d := range ders {
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d}); err != nil {
			return err
		}
	}
	return fsutil.WriteFileAtomic(path, b.Bytes(), 0o644)
}

// ReadCerts loads every certificate of a PEM file written by WriteCerts
// or WriteCert: at least one, each of which must parse.
func ReadCerts(path string) ([][]byte, []*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificates: %w", err)
	}
	if len(b) > maxCertsFile {
		return nil, nil, fmt.Errorf("read certificates %s: %d bytes, more than a bundle of certificates holds", path, len(b))
	}
	ders := PEMCertDERs(b)
	if len(ders) == 0 {
		return nil, nil, fmt.Errorf("read certificates %s: not a PEM certificate", path)
	}
	certs, err := ParseCerts(ders)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificates %s: %w", path, err)
	}
	return ders, certs, nil
}
