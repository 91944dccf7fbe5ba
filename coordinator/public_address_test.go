package coordinator

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

func TestPublicAddress(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Skip("no hostname:", err)
	}
	tests := []struct {
		name, quic, public string
		want, errHas       string
	}{
		{name: "configured apart from the bound address", quic: ":8027", public: "outpost.example.org:443", want: "outpost.example.org:443"},
		{name: "default is the listen address", quic: "10.0.0.5:8027", want: "10.0.0.5:8027"},
		{name: "an unspecified host becomes this machine's name", quic: ":8027", want: net.JoinHostPort(hostname, "8027")},
		{name: "0.0.0.0 too", quic: "0.0.0.0:9000", want: net.JoinHostPort(hostname, "9000")},
		{name: "IPv6 listen address", quic: "[2001:db8::1]:8027", want: "[2001:db8::1]:8027"},
		{name: "no port", quic: ":8027", public: "outpost.example.org", errHas: "public_address"},
		{name: "no host", quic: ":8027", public: ":8027", errHas: "public_address"},
		{name: "port 0", quic: ":8027", public: "outpost.example.org:0", errHas: "public_address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.QUICAddr, cfg.PublicAddress = tc.quic, tc.public
			c, err := New(cfg, logging.Discard(), prometheus.NewRegistry())
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("New: %v, want an error about %s", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.PublicAddress(); got != tc.want {
				t.Fatalf("PublicAddress() = %q, want %q", got, tc.want)
			}
		})
	}
}
