package cli

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// A direct technician session checks that the host's certificate comes
// from the pinned CA and names the member id asked for. A relay's serving
// certificate comes from the same CA, and its name is a host name an admin
// gave the relay: one named like a member id passed for that member.
// Hosts answer with member certificates; a relay's is refused, whatever
// it names.
func TestADirectSessionRefusesARelaysServingCertificate(t *testing.T) {
	authority, err := ca.LoadOrCreate(t.TempDir(), nil, 0, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serving bool) tls.ConnectionState {
		t.Helper()
		key, err := tlsutil.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := tlsutil.NewCSR(key, "ag-0123456789abcdef")
		if err != nil {
			t.Fatal(err)
		}
		var der []byte
		if serving {
			der, err = authority.IssueServing(csr, "rl-1", []string{"ag-0123456789abcdef"}, 0)
		} else {
			der, err = authority.IssueMember(csr, "ag-0123456789abcdef")
		}
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		root, err := x509.ParseCertificate(authority.CertDER())
		if err != nil {
			t.Fatal(err)
		}
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, root}}
	}
	conf, err := hostTLS(authority.Fingerprint(), "ag-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if err := conf.VerifyConnection(issue(false)); err != nil {
		t.Fatalf("the host's own member certificate: %v", err)
	}
	if err := conf.VerifyConnection(issue(true)); err == nil || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("a relay's serving certificate named like the host: %v; want refused as a relay's", err)
	}
}
