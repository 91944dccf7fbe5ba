package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// TestRevocationReachesACutOffHostByGossip: a host the coordinator cannot
// reach learns that a technician was disabled from its office peers, and
// refuses the technician's still-unexpired session token on a direct
// session. (The CLI asks the coordinator for a session token, which it no
// longer signs for a disabled user: the token here is one taken before.)
func TestRevocationReachesACutOffHostByGossip(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("annex", map[string]any{"checkin_interval": "1h"})
	token := c.EnrollToken("annex", "agent", 2)
	listen := freeUDPOn(t, "127.0.0.91")
	online := startAgent(t, c, token, "annex-online", "127.0.0.90")
	cutoff := startAgent(t, c, token, "annex-cutoff", "127.0.0.91", agent.WithSessionListen(listen, ""))
	tina := newTechnician(t, c, "tina")
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs", "members": []string{"tina"}}, nil)
	rev := setOfficePerms(t, c, "annex", map[string]any{"subject": "group:techs", "rights": []string{"command"}})
	waitRevision(t, online, rev)
	waitRevision(t, cutoff, rev)

	tina.login()
	tina.env = []string{"OUTPOST_DIRECT=" + listen}
	if r := tina.run("", "exec", cutoff.a.ID(), "--", "/bin/echo", "before"); r.code != 0 || r.stdout != "before\n" {
		t.Fatalf("direct session before the revocation: %v", r)
	}
	var signIn struct {
		AccessToken string `json:"access_token"`
	}
	if b, err := os.ReadFile(filepath.Join(tina.dir, "credentials.json")); err != nil || json.Unmarshal(b, &signIn) != nil {
		t.Fatalf("tina's sign-in: %v", err)
	}
	var st struct{ Token string }
	if code, body := tokenCall(t, c, signIn.AccessToken, "/v1/hosts/"+cutoff.a.ID()+"/session-token", &st); code != 200 {
		t.Fatalf("session token: %d %s", code, body)
	}
	direct := func() *wire.SessionEnd {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, listen, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPNTechnician}}, &quic.Config{})
		if err != nil {
			return &wire.SessionEnd{Error: err.Error()}
		}
		defer conn.CloseWithError(0, "")
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return &wire.SessionEnd{Error: err.Error()}
		}
		_ = wire.WriteMsg(str, &wire.SessionOpen{Token: st.Token, Host: cutoff.a.ID(), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "after"}})
		for {
			var out wire.SessionOutput
			if err := wire.ReadMsg(str, &out); err != nil {
				return &wire.SessionEnd{Error: err.Error()}
			}
			if end := out.GetEnd(); end != nil {
				return end
			}
		}
	}
	if end := direct(); end.GetError() != "" || end.GetDenied() {
		t.Fatalf("the session token before the revocation: %v", end)
	}

	// The host loses the coordinator (a dead address after a restart) but
	// keeps its office.
	cutoff.stop()
	cutoff.cfg.Coordinator = "127.0.0.1:9" // nothing listens there
	cutoff.start()
	tu.Eventually(t, 30*time.Second, func() bool { return len(online.a.GossipPeers()) == 1 && len(cutoff.a.GossipPeers()) == 1 },
		"the cut-off host did not rejoin its office")

	// Disabling tina reaches the online host by push, and the cut-off one
	// only through the office.
	c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
	var end *wire.SessionEnd
	tu.Eventually(t, 30*time.Second, func() bool {
		end = direct()
		return end.GetDenied() && strings.Contains(end.GetError(), "revoked")
	}, "the cut-off host still lets a disabled technician in: %v", end)
	// The CLI is refused at the coordinator already.
	if r := tina.run("", "exec", cutoff.a.ID(), "--", "/bin/echo", "after"); r.code == 0 {
		t.Fatalf("a disabled technician's CLI got a session: %v", r)
	}
}

// tokenCall POSTs to the API with a user's access token.
func tokenCall(t *testing.T, c *coordinatortest.Harness, token, path string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, out)
	return resp.StatusCode, string(b)
}
