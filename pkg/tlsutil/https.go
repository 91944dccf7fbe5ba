package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// This file is the HTTPS side: relays' content and the coordinator's admin
// API, served with a certificate from the coordinator's CA or one the admin
// brings, and the clients that trust them.

// ServingHosts is the part of asked that relayURLs name, sorted and without
// repeats; IPs are compared in canonical form, names without case, and
// what is not a host (CertifiableHost: a wildcard) is left out. It is
// what a relay's serving certificate may name: the coordinator issues no
// more, and the relay renews when it changes.
func ServingHosts(asked, relayURLs []string) []string {
	named := map[string]bool{}
	for _, r := range relayURLs {
		if u, err := url.Parse(r); err == nil && u.Hostname() != "" {
			named[CanonHost(u.Hostname())] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, h := range asked {
		h = CanonHost(h)
		if CertifiableHost(h) && named[h] && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

// CertifiableHost says whether the CA may name h in a certificate: an
// IP, or a DNS name of labels of letters, digits, '-' and '_' (found in
// Windows networks). Never a pattern: a wildcard would make a relay's
// certificate good for every host under it, another office's relay
// among them. A fully qualified name may end in a dot (it matches only
// itself, as dialled).
func CertifiableHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// CanonHost is h lower-cased, or an IP in its canonical form.
func CanonHost(h string) string {
	h = strings.Trim(strings.TrimSpace(h), "[]")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.ToLower(h)
}

// CertHosts lists the DNS names and IPs a certificate is valid for, as
// ServingHosts writes them.
func CertHosts(c *x509.Certificate) []string {
	var out []string
	for _, d := range c.DNSNames {
		out = append(out, CanonHost(d))
	}
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

// NeedsRenewal says whether a serving certificate should be replaced: it
// is missing, has less than a third of its life left at now, or does not
// name exactly hosts.
func NeedsRenewal(leaf *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf == nil {
		return true
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if leaf.NotAfter.Sub(now) < life/3 {
		return true
	}
	have := CertHosts(leaf)
	want := append([]string(nil), hosts...)
	for i := range want {
		want[i] = CanonHost(want[i])
	}
	sort.Strings(want)
	return strings.Join(have, ",") != strings.Join(want, ",")
}

// CertFile serves a certificate and key that an admin keeps in PEM files,
// reading them again when they change (a renewal by certbot or similar
// needs no restart).
type CertFile struct {
	certPath, keyPath string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

// LoadCertFile reads the pair once, so that a wrong path or a key that
// does not match fails at start.
func LoadCertFile(certPath, keyPath string) (*CertFile, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("a certificate needs both its file and its key file")
	}
	f := &CertFile{certPath: certPath, keyPath: keyPath}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *CertFile) load() error {
	cert, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return fmt.Errorf("load certificate %s with key %s: %w", f.certPath, f.keyPath, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("certificate %s: %w", f.certPath, err)
		}
	}
	fi, err := os.Stat(f.certPath)
	if err != nil {
		return err
	}
	f.cert, f.modTime = &cert, fi.ModTime()
	return nil
}

// GetCertificate is for tls.Config; it looks at the files at most every
// ten seconds and keeps the last good pair if a new one does not load.
func (f *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) > 10*time.Second {
		f.checked = time.Now()
		if fi, err := os.Stat(f.certPath); err == nil && !fi.ModTime().Equal(f.modTime) {
			_ = f.load()
		}
	}
	return f.cert, nil
}

// Leaf is the certificate being served.
func (f *CertFile) Leaf() *x509.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert.Leaf
}

// ServerTLS is the server side of Outpost's HTTPS listeners.
func ServerTLS(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get, NextProtos: []string{"h2", "http/1.1"}}
}

// RelayClientTLS is how members reach a relay at host over HTTPS: its
// certificate must be valid for host and come from the coordinator's CA
// (as cas returns it at the handshake: the certificates the member
// trusts; VerifyFromCA) or from the system's roots, for relays whose
// admins brought their own certificate. It is made for each connection,
// as host must be known to the check (a TLS client sends no IP address
// as a server name).
func RelayClientTLS(host string, cas func() []*x509.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		NextProtos:         []string{"h2", "http/1.1"},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the relay presented no certificate")
			}
			opts := x509.VerifyOptions{DNSName: host}
			err := VerifyFromCA(cs.PeerCertificates, cas(), opts)
			if err == nil {
				return nil
			}
			if system, serr := x509.SystemCertPool(); serr == nil && system != nil {
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				opts.Roots, opts.Intermediates = system, inter
				if _, serr := cs.PeerCertificates[0].Verify(opts); serr == nil {
					return nil
				}
			}
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		},
	}
}

// PinnedHTTPS is the client side of the coordinator's admin API over
// HTTPS: the certificate must verify for host (the URL's) against the
// system's roots or extra (a --ca file), or — when fingerprint is set —
// chain to the CA with that fingerprint, which issues the coordinator's own
// certificate under ServerName whatever address it is reached at. The
// coordinator's CA is trusted by its key (VerifyFromCA): a --ca file or a
// fingerprint of a certificate it has since renewed still works.
func PinnedHTTPS(host, fingerprint string, extraCerts []*x509.Certificate) (*tls.Config, error) {
	var extra *x509.CertPool
	if len(extraCerts) > 0 {
		extra = x509.NewCertPool()
		for _, c := range extraCerts {
			extra.AddCert(c)
		}
	}
	want := ""
	if fingerprint != "" {
		var err error
		if want, err = NormalizeFingerprint(fingerprint); err != nil {
			return nil, err
		}
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if IsRelayCert(leaf) {
				return errNotCoordinator
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			var firstErr error
			for _, pool := range []*x509.CertPool{extra, roots} {
				if pool == nil {
					continue
				}
				opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: host}
				if _, err := leaf.Verify(opts); err == nil {
					return nil
				} else if firstErr == nil {
					firstErr = err
				}
				// The coordinator's own certificate, from a --ca file.
				if pool == extra && VerifyFromCA(cs.PeerCertificates, extraCerts, x509.VerifyOptions{DNSName: ServerName}) == nil {
					return nil
				}
			}
			if want != "" {
				err := verifyPinned(cs.PeerCertificates, want)
				if err == nil {
					return nil
				}
				return fmt.Errorf("%w (and it is not the coordinator's own certificate: %v)", firstErr, err)
			}
			return firstErr
		},
	}, nil
}

// RelayOU marks the serving certificates the coordinator's CA issues to
// relays (OU "relay <member id>"), so that nobody takes one for the
// coordinator's.
const RelayOU = "relay "

// IsRelayCert says whether c is a relay's serving certificate.
func IsRelayCert(c *x509.Certificate) bool {
	for _, ou := range c.Subject.OrganizationalUnit {
		if strings.HasPrefix(ou, RelayOU) {
			return true
		}
	}
	return false
}
