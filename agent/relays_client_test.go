package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/wire"
)

// relayTestCA is a coordinator-like CA for the relay client tests.
type relayTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRelayTestCA(t *testing.T) *relayTestCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Outpost CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &relayTestCA{cert: c, key: key}
}

func (ca *relayTestCA) leaf(t *testing.T, cn string, eku x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func relayTestIdentity(t *testing.T, ca *relayTestCA) *member.Identity {
	t.Helper()
	id := &member.Identity{ID: "ag-1", Office: "hq", Role: wire.Role_ROLE_AGENT}
	if err := id.SetCAs(ca.cert.Raw); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(ca.leaf(t, "ag-1", x509.ExtKeyUsageClientAuth))
	return id
}

// connectProxy is an HTTP CONNECT proxy, as an agent behind HTTPS_PROXY uses.
func connectProxy(t *testing.T) *httptest.Server {
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			c.Close()
			up.Close()
			return
		}
		if n := rw.Reader.Buffered(); n > 0 {
			b, _ := rw.Reader.Peek(n)
			up.Write(b)
		}
		go func() { io.Copy(up, c); up.Close() }()
		io.Copy(c, up)
		c.Close()
	}))
	t.Cleanup(p.Close)
	return p
}

// An agent whose relay traffic goes through a proxy (HTTPS_PROXY in its
// environment, ProxyFromEnvironment in contentClient's transport) still
// fetches from a relay whose serving certificate the coordinator's CA
// issued: net/http makes a proxied TLS connection with the transport's
// TLSClientConfig, not with its DialTLSContext, so the CA must be in both.
func TestContentClientTrustsTheCAThroughAProxy(t *testing.T) {
	ca := newRelayTestCA(t)
	relay := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "chunk") }))
	relay.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "relay", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))}}
	relay.StartTLS()
	defer relay.Close()

	hc := contentClient(relayTestIdentity(t, ca), 5*time.Second)
	// Directly: works.
	resp, err := hc.Get(relay.URL)
	if err != nil {
		t.Fatalf("direct fetch from the relay: %v", err)
	}
	resp.Body.Close()

	// Through the proxy (set here as ProxyFromEnvironment would from
	// HTTPS_PROXY; it skips loopback addresses, hence set by hand).
	proxyURL, _ := url.Parse(connectProxy(t).URL)
	hc = contentClient(relayTestIdentity(t, ca), 5*time.Second)
	hc.Transport.(*http.Transport).Proxy = http.ProxyURL(proxyURL)
	resp, err = hc.Get(relay.URL)
	if err != nil {
		t.Fatalf("fetch from a CA-issued relay through a proxy: %v", err)
	}
	resp.Body.Close()
}

// A relay address that answers the TLS handshake a byte at a time (a
// wedged or hostile host at a relay's address) is given up on after the
// transport's TLSHandshakeTimeout (10 s, from http.DefaultTransport),
// which net/http does not apply to a DialTLSContext of the transport's:
// the per-read idle deadline alone, which a byte every second never
// trips, would let the fetch hang.
func TestContentClientBoundsTheRelayHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// A TLS handshake record header, then its body a byte a second.
				c.Write([]byte{0x16, 0x03, 0x03, 0x40, 0x00})
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
					}
					if _, err := c.Write([]byte{0}); err != nil {
						return
					}
				}
			}()
		}
	}()
	ca := newRelayTestCA(t)
	hc := contentClient(relayTestIdentity(t, ca), 3*time.Second)
	hc.Timeout = 25 * time.Second // only to end the test
	start := time.Now()
	resp, err := hc.Get("https://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the handshake with a relay that trickles went on for %v (err %v); the transport's TLSHandshakeTimeout is %v",
			took.Round(time.Second), err, hc.Transport.(*http.Transport).TLSHandshakeTimeout)
	}
}
