package agent

import (
	"reflect"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// Plain http:// relays are used only where the office allows plain HTTP.
func TestRelayURLsRefusePlainHTTPUnlessAllowed(t *testing.T) {
	relays := []string{"http://10.1.0.5:8090", "https://10.1.0.6:8090", "HTTP://10.1.0.7:8090"}
	for _, tc := range []struct {
		name string
		info *wire.OfficeInfo
		want []string
	}{
		{"relay mode, plain refused", &wire.OfficeInfo{Mode: wire.Mode_MODE_RELAY, Relays: relays}, []string{"https://10.1.0.6:8090"}},
		{"relay mode, plain allowed", &wire.OfficeInfo{Mode: wire.Mode_MODE_RELAY, Relays: relays, AllowPlainHttp: true}, relays},
		{"distribution mode", &wire.OfficeInfo{Mode: wire.Mode_MODE_DISTRIBUTION, Relays: relays}, []string{"https://10.1.0.6:8090"}},
		{"direct mode", &wire.OfficeInfo{Mode: wire.Mode_MODE_DIRECT, Relays: relays, AllowPlainHttp: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := relayURLs(tc.info, logging.Discard()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
