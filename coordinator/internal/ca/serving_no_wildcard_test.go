package ca

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// A serving certificate names hosts, never patterns: an office whose
// relay URL says https://*.corp.example (a slip in office edit) would
// otherwise get its relay a certificate every member takes for any host
// of corp.example — another office's relay, the file server. Names that
// are no host at all are refused as well.
func TestIssueServingRefusesWildcardsAndNonHosts(t *testing.T) {
	authority, err := LoadOrCreate(t.TempDir(), nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tlsutil.NewKey()
	csr, _ := tlsutil.NewCSR(key, "relay")
	for _, bad := range []string{"*.corp.example", "*", "relay.*.example", "relay..example", "relay example", "relay.example..", ".example", "relay/x"} {
		der, err := authority.IssueServing(csr, "rl-1", []string{"relay.branch.example", bad}, time.Hour)
		if err == nil {
			leaf, _ := x509.ParseCertificate(der)
			t.Errorf("issued a serving certificate for %q: names %q", bad, leaf.DNSNames)
		}
	}
	for _, good := range []string{"relay.branch.example", "relay-1", "RELAY_2.branch.example", "relay.example.", "10.1.0.5", "fd00::5"} {
		if _, err := authority.IssueServing(csr, "rl-1", []string{good}, time.Hour); err != nil {
			t.Errorf("refused %q: %v", good, err)
		}
	}
}
