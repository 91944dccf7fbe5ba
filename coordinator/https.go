package coordinator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// The admin servers have no read timeout, for uploads that stream for
// hours: the API and the console bound each request's body themselves
// (a whole body within a minute, an upload's reads within a minute each).
// What comes before a handler runs is bounded here: a request's head,
// and a TLS handshake, within readHeaderTimeout; a kept-alive connection
// with no request is closed after idleTimeout. Variables for tests.
var (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// adminServer is one listener of the admin API: plain HTTP or HTTPS.
type adminServer struct {
	srv   *http.Server
	ln    net.Listener
	https bool
}

func (a adminServer) serve() error {
	var err error
	if a.https {
		err = a.srv.ServeTLS(a.ln, "", "")
	} else {
		err = a.srv.Serve(a.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve admin API on %s: %w", a.ln.Addr(), err)
}

// listenAdmin binds the admin API's listeners: plain HTTP on http_addr,
// HTTPS on https_addr with the admin's certificate files or the
// coordinator's own from its CA.
func (c *Coordinator) listenAdmin(h http.Handler, authority *ca.CA) ([]adminServer, error) {
	var out []adminServer
	fail := func(err error) ([]adminServer, error) {
		for _, s := range out {
			s.ln.Close()
		}
		return nil, err
	}
	newServer := func() *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout}
	}
	if c.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", c.cfg.HTTPAddr)
		if err != nil {
			return fail(fmt.Errorf("listen HTTP on %s: %w", c.cfg.HTTPAddr, err))
		}
		c.httpAddr = ln.Addr()
		out = append(out, adminServer{srv: newServer(), ln: ln})
	}
	if c.cfg.HTTPSAddr != "" {
		get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := authority.ServerCertificate()
			return &cert, nil
		}
		if c.cfg.TLSCertFile != "" {
			cf, err := tlsutil.LoadCertFile(c.cfg.TLSCertFile, c.cfg.TLSKeyFile)
			if err != nil {
				return fail(fmt.Errorf("admin HTTPS: %w", err))
			}
			get = cf.GetCertificate
		}
		ln, err := net.Listen("tcp", c.cfg.HTTPSAddr)
		if err != nil {
			return fail(fmt.Errorf("listen HTTPS on %s: %w", c.cfg.HTTPSAddr, err))
		}
		c.httpsAddr = ln.Addr()
		srv := newServer()
		srv.TLSConfig = tlsutil.ServerTLS(get)
		out = append(out, adminServer{srv: srv, ln: ln, https: true})
	}
	return out, nil
}

// serverHosts are the names the coordinator's own certificate carries
// besides tlsutil.ServerName (which members and the CLI verify): those a
// browser or curl reaches the admin API at.
func (c *Coordinator) serverHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if host, _, err := net.SplitHostPort(c.PublicAddress()); err == nil && host != "" {
		hosts = append(hosts, host)
	}
	for _, addr := range []string{c.cfg.HTTPSAddr, c.cfg.HTTPAddr} {
		if host, _, err := net.SplitHostPort(addr); err == nil && host != "" {
			if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, host)
			}
		}
	}
	return append(hosts, c.cfg.TLSHosts...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
