package tlsutil

import (
	"reflect"
	"testing"
)

// A relay asks for, and the coordinator certifies, only hosts: a relay
// URL whose host is a pattern (https://*.corp.example) or no host at all
// is left out, and the relay's other hosts still get their certificate.
// A fully qualified name with its trailing dot is a host.
func TestServingHostsLeaveOutWildcards(t *testing.T) {
	office := []string{"https://*.corp.example:8090", "https://*:8090", "https://relay.corp.example:8090", "https://relay.example.:8090"}
	asked := []string{"*.corp.example", "*", "relay.corp.example", "relay.example."}
	if got, want := ServingHosts(asked, office), []string{"relay.corp.example", "relay.example."}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServingHosts = %q, want %q", got, want)
	}
	for h, want := range map[string]bool{
		"relay.corp.example": true, "relay-1": true, "relay_2.example": true, "10.1.0.5": true, "::1": true,
		"relay.example.": true, "*.corp.example": false, "*": false, "a..b": false, "a.b..": false, ".": false, "": false, "a b": false,
		"outpost-coordinator": true, // a host; IssueServing refuses it for its own reason
	} {
		if got := CertifiableHost(h); got != want {
			t.Errorf("CertifiableHost(%q) = %v, want %v", h, got, want)
		}
	}
}
