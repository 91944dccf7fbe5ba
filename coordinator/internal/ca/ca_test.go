package ca

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

func TestIssueServingNamesTheHostsAndServesOnly(t *testing.T) {
	authority, err := LoadOrCreate(t.TempDir(), []string{"coord.example.org", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tlsutil.NewCSR(key, "relay")
	if err != nil {
		t.Fatal(err)
	}
	der, err := authority.IssueServing(csr, "rl-1", []string{"relay.branch.example", "10.1.0.5"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"relay.branch.example", "10.1.0.5"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err != nil {
			t.Errorf("not valid for %s: %v", host, err)
		}
	}
	for _, host := range []string{tlsutil.ServerName, "10.1.0.6", "coord.example.org"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err == nil {
			t.Errorf("valid for %s, which the relay did not ask for", host)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a serving certificate authenticates a client")
	}
	if d := time.Until(leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires in %v, want 30 days", d)
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("10.1.0.5")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}

	// The coordinator's own name is never issued to a relay: members and
	// the CLI trust it from this CA alone.
	for _, bad := range [][]string{{tlsutil.ServerName}, {"x", strings.ToUpper(tlsutil.ServerName)}, nil} {
		if _, err := authority.IssueServing(csr, "rl-1", bad, 0); err == nil {
			t.Errorf("issued for %q", bad)
		}
	}
	if _, err := authority.IssueServing([]byte("junk"), "rl-1", []string{"x"}, 0); err == nil {
		t.Error("issued for a malformed request")
	}

	// The coordinator's own certificate carries its admin hosts and the
	// name members verify.
	own := authority.ServerCertificate().Leaf
	for _, host := range []string{tlsutil.ServerName, "coord.example.org", "127.0.0.1"} {
		if _, err := own.Verify(x509.VerifyOptions{Roots: authority.Pool(), DNSName: host}); err != nil {
			t.Errorf("coordinator certificate not valid for %s: %v", host, err)
		}
	}
}
