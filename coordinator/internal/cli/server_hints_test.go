package cli

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// --server with http:// on the coordinator's HTTPS port says to write
// https://, rather than echo the server's 400.
func TestPlainHTTPToTheHTTPSPortSaysSo(t *testing.T) {
	h := coordinatortest.New(t)
	plain := "http://" + strings.TrimPrefix(h.HTTPS, "https://")
	res := runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": plain, "OUTPOST_TOKEN": h.Token}}, "office", "list")
	if res.code != 1 || !strings.Contains(res.stderr, plain+" speaks HTTPS: write --server as "+h.HTTPS) {
		t.Fatalf("office list over plain HTTP to the HTTPS port: %+v", res)
	}
}
