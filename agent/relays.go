package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// relayURLs are the relays to fetch from in the office's mode: none in
// direct mode; in relay and distribution mode the office's relays, of
// which plain http:// ones only where the office allows plain HTTP.
func relayURLs(info *wire.OfficeInfo, log *slog.Logger) []string {
	switch info.GetMode() {
	case wire.Mode_MODE_RELAY, wire.Mode_MODE_DISTRIBUTION:
	default:
		return nil
	}
	var out []string
	for _, u := range info.GetRelays() {
		if strings.HasPrefix(strings.ToLower(u), "http://") && !info.GetAllowPlainHttp() {
			log.Warn("relay skipped: plain HTTP is not allowed in this office", "relay", u, "office", info.GetName())
			continue
		}
		out = append(out, u)
	}
	return out
}

// contentClient fetches artifacts: from relays over HTTPS, trusting the
// coordinator's CA pinned at enrollment (which issues relays' serving
// certificates) besides the system's roots, and from the file server
// through presigned URLs. It has no overall timeout (artifacts are large),
// but a connection that says nothing for idle is dropped: a relay that
// hangs or loses power mid-download is left for the next one as surely as
// one that is killed, and the download resumes there by range.
func contentClient(id *member.Identity, idle time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
	t.ResponseHeaderTimeout = time.Minute
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if id != nil {
		// Through a proxy, net/http makes the TLS connection itself, with
		// this: the system's roots and the CA's certificates the agent
		// held when it started.
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		for _, c := range id.CAs() {
			roots.AddCert(c)
		}
		t.TLSClientConfig.RootCAs, t.TLSClientConfig.GetClientCertificate = roots, id.ClientCertificate
		// Directly, the relay's certificate is checked for the host
		// dialled, and may come from any certificate of the coordinator's
		// CA the agent holds now (tlsutil.RelayClientTLS).
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			conf := tlsutil.RelayClientTLS(host, id.CAs)
			// Relays serve their content to members only: the agent
			// shows its member certificate when a server asks (the
			// file server does not).
			conf.GetClientCertificate = id.ClientCertificate
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(&idleConn{Conn: c, idle: idle}, conf)
			hctx, cancel := context.WithTimeout(ctx, t.TLSHandshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		}
	}
	return &http.Client{Transport: t}
}

// idleConn fails a read that waits longer than idle for its first byte.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}
