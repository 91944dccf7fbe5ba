package cli

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// --server with https:// on the coordinator's plain-HTTP port says to
// write http://, rather than pass on Go's "server gave HTTP response to
// HTTPS client".
func TestHTTPSToThePlainPortSaysSo(t *testing.T) {
	h := coordinatortest.New(t)
	if !strings.HasPrefix(h.URL, "http://") {
		t.Fatalf("the harness's URL %q is not plain HTTP", h.URL)
	}
	tls := "https://" + strings.TrimPrefix(h.URL, "http://")
	res := runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": tls, "OUTPOST_TOKEN": h.Token}}, "office", "list")
	if res.code != 1 || !strings.Contains(res.stderr, tls+" speaks plain HTTP: write --server as "+h.URL) {
		t.Fatalf("office list over HTTPS to the plain-HTTP port: %+v", res)
	}
}
