package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// A relay's serving certificate comes from the coordinator's CA too, and
// it is for HTTPS to that relay only. The CA never names the coordinator
// in one (IssueServing), but the member's links to the coordinator do not
// rest on that alone: like the CLI's HTTPS (PinnedHTTPS), enrolment and
// the mutual-TLS link refuse a relay's certificate even when it says
// ServerName, so a relay (or whoever took its key) cannot stand in for
// the coordinator. Real TLS on loopback.
func TestMemberLinksRefuseARelaysServingCertificate(t *testing.T) {
	ca := newTestCA(t)
	relay := relayCert(t, ca, ServerName)
	relay.Certificate = append(relay.Certificate, ca.cert.Raw) // sent along, as the relay does
	own := ca.issue(t, relay.Leaf.NotBefore, relay.Leaf.NotAfter, ServerName)
	cas := func() []*x509.Certificate { return []*x509.Certificate{ca.cert} }
	none := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	member, err := MemberConfig(none, cas, "outpost-test")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := PinnedConfig(Fingerprint(ca.cert.Raw), "outpost-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"the coordinator's certificate", own, true},
		{"a relay's serving certificate", relay, false},
	} {
		for link, conf := range map[string]*tls.Config{"enrolment": pinned, "member link": member} {
			t.Run(tc.name+"/"+link, func(t *testing.T) {
				addr := serveTLS(t, tc.cert)
				conn, err := tls.Dial("tcp", addr, conf)
				if err == nil {
					conn.Close()
				}
				if (err == nil) != tc.ok {
					t.Fatalf("got %v, want ok=%v", err, tc.ok)
				}
			})
		}
	}
}

// serveTLS answers TLS 1.3 handshakes on loopback with cert.
func serveTLS(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{cert}, NextProtos: []string{"outpost-test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}(c)
		}
	}()
	return ln.Addr().String()
}
