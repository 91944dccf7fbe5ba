package relay

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// servingCert holds the certificate the content server presents when it
// comes from the coordinator's CA: it is loaded from disk at start, asked
// for after enrollment, and renewed before it expires or when the office's
// relay URLs change which hosts it may name.
type servingCert struct {
	dir  string // where serving.crt and serving.key live
	cert atomic.Pointer[tls.Certificate]
	// warned keeps a refusal from filling the log at every check-in.
	warned string
}

func (s *servingCert) paths() (crt, key string) {
	return filepath.Join(s.dir, "serving.crt"), filepath.Join(s.dir, "serving.key")
}

// load takes the certificate kept by an earlier run, if it is whole.
func (s *servingCert) load() {
	crt, key := s.paths()
	c, err := tls.LoadX509KeyPair(crt, key)
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
		return c, nil
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
func (s *servingCert) ensure(ctx context.Context, call func(context.Context, *wire.Request) (*wire.Response, error), asked, relayURLs []string, caDER []byte) (bool, error) {
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
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		return false, errors.New("serving certificate from the coordinator is not for the key the relay asked with")
	}
	crt, keyPath := s.paths()
	// Key first: a crash between the two leaves a key without its
	// certificate, which load ignores, and the next run asks again.
	if err := tlsutil.WriteKey(keyPath, key); err != nil {
		return false, err
	}
	if err := tlsutil.WriteCert(crt, der); err != nil {
		return false, err
	}
	s.cert.Store(&tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: leaf})
	return true, nil
}
