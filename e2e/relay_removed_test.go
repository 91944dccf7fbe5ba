package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/relay"
)

// A removed member (a stolen laptop) keeps a certificate that verifies
// under the CA for up to a year; the coordinator refuses it at once, and
// the relay, which checks content requests against the CA, refuses it
// from its next check-in on: the relay learns the coordinator's list of
// removed members, keeps it on disk, and answers such a certificate 403.
// Members not removed go on being served.
func TestRelayRefusesARemovedMember(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("berlin", map[string]any{"checkin_interval": "5s"})
	relayData := t.TempDir()
	r, _ := startRelay(t, c, c.EnrollToken("berlin", "relay", 1), func(cfg *relay.Config) { cfg.DataDir = relayData })
	c.MustDo("PATCH", "/v1/offices/berlin", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(t, c, "berlin", r.Addr())
	token := c.EnrollToken("berlin", "agent", 2)
	stolen := startAgent(t, c, token, "ber-stolen", "127.0.0.12")
	kept := startAgent(t, c, token, "ber-kept", "127.0.0.13")
	sha := c.Upload("notes.txt", []byte("what the office's computers install"))

	// GET the artifact from the relay with a member's certificate, as
	// agents do.
	get := func(a *testAgent) (int, string) {
		t.Helper()
		id := filepath.Join(a.cfg.DataDir, "identity")
		cert, err := tls.LoadX509KeyPair(filepath.Join(id, "member.crt"), filepath.Join(id, "member.key"))
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: c.CAPool(), Certificates: []tls.Certificate{cert}}}}
		resp, err := hc.Get(relayURL(r.Addr()) + relay.BlobPath + sha)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, a := range []*testAgent{stolen, kept} {
		if code, body := get(a); code != http.StatusOK {
			t.Fatalf("%s before any removal: %d %s", a.cfg.Hostname, code, body)
		}
	}

	stolen.stop()
	if code, msg := c.Do("DELETE", "/v1/agents/"+stolen.a.ID(), nil, nil); code != http.StatusNoContent {
		t.Fatalf("remove the stolen laptop: %d %s", code, msg)
	}
	var code int
	var body string
	tu.Eventually(t, 30*time.Second, func() bool {
		code, body = get(stolen)
		return code == http.StatusForbidden
	}, "the relay still answers the removed member %d %.200s", code, body)
	if !strings.Contains(body, "removed") {
		t.Fatalf("the refusal does not say why: %s", body)
	}
	if code, body := get(kept); code != http.StatusOK {
		t.Fatalf("a member not removed: %d %s", code, body)
	}
	if fi, err := os.Stat(filepath.Join(relayData, "removed-members.pb")); err != nil || fi.Size() == 0 {
		t.Fatalf("the list is not kept on the relay's disk: %v", err)
	}
}
