package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// trust is how the CLI checks the coordinator's HTTPS certificate besides
// the system's roots: a CA file (--ca, OUTPOST_CA), or the fingerprint of
// the coordinator's own CA (--ca-fingerprint, OUTPOST_CA_FINGERPRINT, or
// the one kept by outpost login for that server).
type trust struct {
	caFile      string
	fingerprint string
}

const trustHint = "pass the coordinator's CA fingerprint with --ca-fingerprint or OUTPOST_CA_FINGERPRINT (printed by the coordinator at start, and in ca.fingerprint in its data directory), " +
	"or a CA certificate file with --ca or OUTPOST_CA"

// transport is a clone of http.DefaultTransport that trusts t.
func (t trust) transport(server string) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" {
		return tr, nil
	}
	var extra []*x509.Certificate
	if t.caFile != "" {
		b, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file (--ca): %w", err)
		}
		for _, der := range tlsutil.PEMCertDERs(b) {
			if c, err := x509.ParseCertificate(der); err == nil {
				extra = append(extra, c)
			}
		}
		if len(extra) == 0 {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", t.caFile)
		}
	}
	conf, err := tlsutil.PinnedHTTPS(u.Hostname(), t.fingerprint, extra)
	if err != nil {
		return nil, usagef("--ca-fingerprint: %v", err)
	}
	tr.TLSClientConfig = conf
	return tr, nil
}

// resolveTrust picks the CA to trust: the flags, then the environment, then
// the fingerprint outpost login kept for this server.
func (g *globals) resolveTrust(server string, getenv func(string) string) trust {
	t := trust{caFile: g.caFile, fingerprint: g.caFingerprint}
	if !g.given["ca"] {
		t.caFile = getenv("OUTPOST_CA")
	}
	if !g.given["ca-fingerprint"] {
		t.fingerprint = getenv("OUTPOST_CA_FINGERPRINT")
	}
	if t.caFile == "" && t.fingerprint == "" {
		if s, fp := keptTrust(getenv); s == server {
			t.fingerprint = fp
		}
	}
	return t
}

// isUntrusted says whether err is a certificate the CLI could not verify.
func isUntrusted(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &hn)
}
