package agent

import (
	"crypto/tls"
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
// but a relay that accepts and then says nothing is left soon.
func contentClient(id *member.Identity) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = time.Minute
	if conf, err := tlsutil.RelayClientTLS(id.CADER); err == nil {
		t.TLSClientConfig = conf
	} else {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t}
}
