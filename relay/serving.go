package relay

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// servingCert holds the certificate the content server presents when it
// comes from the coordinator's CA: it is loaded from disk at start, asked
// for after enrollment, and renewed before it expires or when the office's
// relay URLs change which hosts it may name.
type servingCert struct {
	dir  string // where serving.pem lives (serving.crt and serving.key before)
	cert atomic.Pointer[tls.Certificate]
	// chain, when set, is what is sent along with the certificate: the
	// coordinator CA's certificates the relay holds, so that a member
	// that pinned or holds any of them verifies it.
	chain func() [][]byte
	// warned keeps a refusal from filling the log at every check-in.
	warned string
}

func (s *servingCert) paths() (crt, key string) {
	return filepath.Join(s.dir, "serving.crt"), filepath.Join(s.dir, "serving.key")
}

// pemPath is the file that holds the certificate and its key together:
// written in one atomic step, a kill cannot leave a key beside another
// key's certificate (and the relay without the one it had).
func (s *servingCert) pemPath() string { return filepath.Join(s.dir, "serving.pem") }

// load takes the certificate kept by an earlier run, if it is whole.
func (s *servingCert) load() {
	var c tls.Certificate
	b, err := os.ReadFile(s.pemPath())
	if err == nil {
		c, err = tls.X509KeyPair(b, b)
	} else {
		crt, key := s.paths() // kept by a release before serving.pem
		c, err = tls.LoadX509KeyPair(crt, key)
	}
	if err != nil {
		return
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return
		}
	}
	if time.Now().Before(c.Leaf.NotAfter) {
		s.cert.Store(&c)
	}
}

// GetCertificate is for tls.Config.
func (s *servingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		if s.chain == nil {
			return c, nil
		}
		with := *c
		with.Certificate = append([][]byte{c.Certificate[0]}, s.chain()...)
		return &with, nil
	}
	return nil, errors.New("no serving certificate yet: the relay waits for the coordinator's CA to issue one")
}

func (s *servingCert) leaf() *x509.Certificate {
	if c := s.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// ensure renews the certificate if it is missing, has a third of its life
// left, or names other hosts than want; it reports whether it did.
func (s *servingCert) ensure(ctx context.Context, call func(context.Context, *wire.Request) (*wire.Response, error), asked, relayURLs []string) (bool, error) {
	want := tlsutil.ServingHosts(asked, relayURLs)
	if len(want) == 0 {
		why := fmt.Sprintf("none of the relay's hosts (%s) is named by the office's relay URLs (%s): "+
			"add https://HOST:PORT of this relay to the office, or set advertise_url or tls_hosts",
			strings.Join(asked, ", "), strings.Join(relayURLs, ", "))
		if s.leaf() != nil {
			return false, nil // keep serving with what it has
		}
		return false, errors.New(why)
	}
	if !tlsutil.NeedsRenewal(s.leaf(), want, time.Now()) {
		return false, nil
	}
	key, err := tlsutil.NewKey()
	if err != nil {
		return false, err
	}
	csr, err := tlsutil.NewCSR(key, want[0])
	if err != nil {
		return false, err
	}
	resp, err := call(ctx, &wire.Request{Body: &wire.Request_ServingCert{ServingCert: &wire.ServingCertRequest{Csr: csr, Hosts: want}}})
	if err != nil {
		return false, fmt.Errorf("serving certificate from the coordinator: %w", err)
	}
	der := resp.GetServingCert().GetCertificate()
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return false, fmt.Errorf("serving certificate from the coordinator: %w", err)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return false, errors.New("serving certificate from the coordinator is not for the key the relay asked with")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	pair := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := fsutil.WriteFileAtomic(s.pemPath(), pair, 0o600); err != nil {
		return false, err
	}
	for _, old := range []string{filepath.Join(s.dir, "serving.crt"), filepath.Join(s.dir, "serving.key")} {
		_ = os.Remove(old)
	}
	s.cert.Store(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf})
	return true, nil
}
