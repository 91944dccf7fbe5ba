package coordinator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// call is an API request with a bearer token of the test's choosing.
func call(t *testing.T, h *coordinatortest.Harness, token, method, path string, body any, out any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(b, out)
	}
	return resp.StatusCode, string(b)
}

// evilHost enrols a member that takes every brokered session offer and
// hands over the SessionOpen it is sent, as a host under an attacker's
// control would.
func evilHost(t *testing.T, h *coordinatortest.Harness, ctx context.Context, hostname string) (string, <-chan *wire.SessionOpen) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _, err := member.Enroll(ctx, h.QUIC, h.CA, h.EnrollToken("a", "agent", 1), hostname, wire.Role_ROLE_AGENT, key)
	if err != nil {
		t.Fatal(err)
	}
	opens := make(chan *wire.SessionOpen, 4)
	var cl *member.Client
	cl, err = member.NewClient(id, h.QUIC, func(_ context.Context, r *wire.Request) *wire.Response {
		off := r.GetSessionOffer()
		if off == nil {
			return nil
		}
		go func() {
			// On the member's own connection, as an agent attaches: a
			// second connection of the member's would replace the first,
			// and the client, reconnecting, would replace it in turn.
			str, err := cl.OpenStream(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			_ = wire.WriteMsg(str, &wire.Request{Body: &wire.Request_SessionAttach{SessionAttach: &wire.SessionAttach{SessionId: off.GetSessionId()}}})
			var open wire.SessionOpen
			if err := wire.ReadMsg(str, &open); err != nil {
				t.Error(err)
				return
			}
			opens <- &open
			_ = wire.WriteMsg(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{}}})
			str.Close()
		}()
		return nil
	}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = cl.Run(ctx) }()
	if _, err := cl.Call(ctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Hostname: hostname}}}); err != nil {
		t.Fatal(err)
	}
	return id.ID, opens
}

// broker opens a technician session through the coordinator and returns
// how it ended, if the coordinator ended it.
func broker(t *testing.T, h *coordinatortest.Harness, ctx context.Context, open *wire.SessionOpen) *wire.SessionEnd {
	t.Helper()
	tc, err := tlsutil.PinnedConfig(h.CA, wire.ALPNTechnician)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := quic.DialAddr(ctx, h.QUIC, tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteMsg(str, open); err != nil {
		t.Fatal(err)
	}
	var out wire.SessionOutput
	if err := wire.ReadMsg(str, &out); err != nil {
		return nil
	}
	return out.GetEnd()
}

// A host never sees a technician's access token, and what it does see is
// good nowhere else: not on the admin API, not to broker a session to
// another host.
func TestHostsSeeOnlyTheirOwnSessionToken(t *testing.T) {
	h := coordinatortest.New(t)
	h.CreateOffice("a", nil)
	h.MustDo("POST", "/v1/users", map[string]any{"name": "alice", "password": "alice-password-1", "role": "admin"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	evilID, opens := evilHost(t, h, ctx, "evil-host")
	_, _ = evilHost(t, h, ctx, "victim-host")

	var login struct {
		AccessToken string `json:"access_token"`
	}
	if code, body := call(t, h, "", "POST", "/v1/login", map[string]any{"user": "alice", "password": "alice-password-1"}, &login); code != 200 {
		t.Fatalf("login: %d %s", code, body)
	}

	// Brokered: the host gets a token of its own, not alice's.
	if end := broker(t, h, ctx, &wire.SessionOpen{Token: login.AccessToken, Host: "evil-host", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"uptime"}}); end.GetError() != "" {
		t.Fatalf("the coordinator ended the session: %v", end)
	}
	var seen *wire.SessionOpen
	select {
	case seen = <-opens:
	case <-ctx.Done():
		t.Fatal("the session never reached the host")
	}
	if seen.GetToken() == login.AccessToken || seen.GetToken() == "" {
		t.Fatal("the host was sent the technician's access token")
	}
	if seen.GetHost() != "evil-host" || len(seen.GetArgv()) != 1 {
		t.Fatalf("the host was sent %v", seen)
	}

	// Direct: the coordinator signs one for the host asked.
	var direct struct{ ID, Token string }
	if code, body := call(t, h, login.AccessToken, "POST", "/v1/hosts/evil-host/session-token", nil, &direct); code != 200 || direct.ID != evilID || direct.Token == "" {
		t.Fatalf("session token: %d %s", code, body)
	}
	if code, body := call(t, h, h.Token, "POST", "/v1/hosts/evil-host/session-token", nil, nil); code != 403 || !strings.Contains(body, "outpost login") {
		t.Fatalf("a session token for the admin token: %d %s", code, body)
	}

	for name, tok := range map[string]string{"brokered": seen.GetToken(), "direct": direct.Token} {
		// The admin API refuses it.
		code, body := call(t, h, tok, "POST", "/v1/users", map[string]any{"name": "mallory", "password": "mallory-password-1", "role": "admin"}, nil)
		if code != 401 || !strings.Contains(body, "session token") {
			t.Errorf("%s session token on the admin API: %d %s", name, code, body)
		}
		if code, _ := call(t, h, tok, "GET", "/v1/me", nil, nil); code != 401 {
			t.Errorf("%s session token on GET /v1/me: %d", name, code)
		}
		// So does the broker, for any host.
		for _, host := range []string{"victim-host", "evil-host"} {
			end := broker(t, h, ctx, &wire.SessionOpen{Token: tok, Host: host, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}})
			if !end.GetDenied() || !strings.Contains(end.GetError(), "session token") {
				t.Errorf("%s session token brokered to %s: %v", name, host, end)
			}
		}
	}
}

// A technician learns of no host where they have no right: the broker
// answers for an unknown host, a host of someone else's and an offline
// one of someone else's in the same words, and a hostname that another
// host shares names the one the technician may reach.
func TestTheBrokerTellsTechniciansOnlyOfTheirHosts(t *testing.T) {
	h := coordinatortest.New(t)
	h.CreateOffice("a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mine, opens := evilHost(t, h, ctx, "pc-7")
	_, _ = evilHost(t, h, ctx, "pc-7") // another host of that name
	_, _ = evilHost(t, h, ctx, "pc-other")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, _, err := member.Enroll(ctx, h.QUIC, h.CA, h.EnrollToken("a", "agent", 1), "pc-gone", wire.Role_ROLE_AGENT, key); err != nil {
		t.Fatal(err)
	}
	h.MustDo("POST", "/v1/users", map[string]any{"name": "tom", "password": "tom-password-12"}, nil)
	h.MustDo("POST", "/v1/users", map[string]any{"name": "ann", "password": "ann-password-12", "role": "read-only"}, nil)
	h.MustDo("PUT", "/v1/hosts/"+mine+"/permissions", map[string]any{"grants": []map[string]any{{"subject": "user:tom", "rights": []string{"command"}}}}, nil)
	login := func(user, password string) string {
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if code, body := call(t, h, "", "POST", "/v1/login", map[string]any{"user": user, "password": password}, &out); code != 200 {
			t.Fatalf("login %s: %d %s", user, code, body)
		}
		return out.AccessToken
	}
	tom, ann := login("tom", "tom-password-12"), login("ann", "ann-password-12")

	var words []string
	for _, host := range []string{"pc-nowhere", "pc-other", "pc-gone"} {
		end := broker(t, h, ctx, &wire.SessionOpen{Token: tom, Host: host, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}})
		if end.GetReason() != wire.SessionEnd_REASON_UNKNOWN_HOST {
			t.Errorf("tom asked for %s: %v", host, end)
		}
		words = append(words, strings.Replace(end.GetError(), host, "HOST", 1))
		code, body := call(t, h, tom, "GET", "/v1/hosts/"+host+"/reach", nil, nil)
		if code != 404 {
			t.Errorf("tom's reach of %s: %d %s", host, code, body)
		}
	}
	if words[0] != words[1] || words[1] != words[2] || strings.Contains(words[2], "seen") {
		t.Errorf("the broker told tom's hosts apart: %q", words)
	}

	// Two hosts are called pc-7, and tom may reach one of them.
	if end := broker(t, h, ctx, &wire.SessionOpen{Token: tom, Host: "pc-7", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}}); end.GetError() != "" {
		t.Fatalf("tom asked for pc-7: %v", end)
	}
	select {
	case <-opens:
	case <-ctx.Done():
		t.Fatal("tom's session never reached his pc-7")
	}
	var reach struct{ ID string }
	if code, body := call(t, h, tom, "GET", "/v1/hosts/pc-7/reach", nil, &reach); code != 200 || reach.ID != mine {
		t.Errorf("tom's reach of pc-7: %d %s, want %s", code, body, mine)
	}

	// Whoever may read the fleet is told what there is.
	if end := broker(t, h, ctx, &wire.SessionOpen{Token: ann, Host: "pc-gone", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}}); end.GetReason() != wire.SessionEnd_REASON_HOST_OFFLINE {
		t.Errorf("ann asked for pc-gone: %v", end)
	}
	if end := broker(t, h, ctx, &wire.SessionOpen{Token: ann, Host: "pc-7", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}}); end.GetReason() != wire.SessionEnd_REASON_AMBIGUOUS_HOST {
		t.Errorf("ann asked for pc-7: %v", end)
	}
}
