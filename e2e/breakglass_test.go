package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/freeport"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// freeUDPOn is a UDP address on ip free for a session listener, outside
// the ephemeral range (see freeport).
func freeUDPOn(t *testing.T, ip string) string {
	t.Helper()
	addr, err := freeport.Get(ip, false, true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestDirectSessionsAndBreakGlass: a host with session_listen takes
// technicians straight (token checked by the host alone), and with the
// coordinator gone, the host-local break-glass password works, except for
// a user marked force-server-security.
func TestDirectSessionsAndBreakGlass(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	listen := freeUDPOn(t, "127.0.0.81")
	tina := newTechnician(t, c, "tina")
	tom := newTechnician(t, c, "tom")
	hash := tina.run("glass-password-1\n", "hash-password")
	if hash.code != 0 || !strings.HasPrefix(hash.stdout, "$argon2id$") {
		t.Fatalf("hash-password: %v", hash)
	}
	pc := startAgent(t, c, c.EnrollToken("berlin", "agent", 1), "pc-direct", "127.0.0.81",
		agent.WithSessionListen(listen, strings.TrimSpace(hash.stdout)))
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs", "members": []string{"tina", "tom"}}, nil)
	c.MustDo("PATCH", "/v1/users/tom", map[string]any{"force_server_security": true}, nil)
	waitRevision(t, pc, setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:techs", "rights": []string{"command"}}))

	tina.login()
	tina.env = []string{"OUTPOST_DIRECT=" + listen}
	if r := tina.run("", "exec", pc.a.ID(), "--", "/bin/echo", "direct"); r.code != 0 || r.stdout != "direct\n" {
		t.Fatalf("direct with a token: %v", r)
	}

	c.Stop() // the coordinator is gone
	glass := func(tc *technician, pw string) cliResult {
		tc.env = []string{"OUTPOST_DIRECT=" + listen, "OUTPOST_CA_FINGERPRINT=" + c.CA, "OUTPOST_LOCAL_USER=" + tc.name, "OUTPOST_LOCAL_PASSWORD=" + pw}
		return tc.run("", "exec", pc.a.ID(), "--", "/bin/echo", "glass")
	}
	if r := glass(tina, "glass-password-1"); r.code != 0 || r.stdout != "glass\n" {
		t.Fatalf("break-glass: %v", r)
	}
	if r := glass(tina, "wrong-password"); r.code == 0 || !strings.Contains(r.stderr, "wrong") {
		t.Fatalf("wrong break-glass password: %v", r)
	}
	if r := glass(tom, "glass-password-1"); r.code == 0 || !strings.Contains(r.stderr, "force server security") {
		t.Fatalf("force-server-security user used break-glass: %v", r)
	}
	// The host-local password goes to the host alone, never through the
	// coordinator.
	tina.env = []string{"OUTPOST_CA_FINGERPRINT=" + c.CA, "OUTPOST_LOCAL_USER=tina", "OUTPOST_LOCAL_PASSWORD=glass-password-1"}
	if r := tina.run("", "exec", "pc-direct", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "only directly") {
		t.Fatalf("break-glass without OUTPOST_DIRECT: %v", r)
	}
	// Only a member id is proved by the host's certificate.
	tina.env = append(tina.env, "OUTPOST_DIRECT="+listen)
	if r := tina.run("", "exec", "pc-direct", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "member id") {
		t.Fatalf("break-glass to a host named by hostname: %v", r)
	}
}

// TestDirectWhenReachableElseBrokered: a signed-in technician names only
// the host; the CLI reaches it directly when it takes direct sessions and
// answers, and through the coordinator otherwise.
func TestDirectWhenReachableElseBrokered(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	token := c.EnrollToken("berlin", "agent", 2)
	listen := freeUDPOn(t, "127.0.0.83")
	open := startAgent(t, c, token, "pc-open", "127.0.0.83", agent.WithSessionListen(listen, ""))
	natted := startAgent(t, c, token, "pc-natted", "127.0.0.84")
	tina := newTechnician(t, c, "tina")
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs", "members": []string{"tina"}}, nil)
	rev := setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:techs", "rights": []string{"command"}})
	waitRevision(t, open, rev)
	waitRevision(t, natted, rev)
	// The coordinator learns the session port at the agent's next check-in.
	var reach struct {
		ID     string   `json:"id"`
		Direct []string `json:"direct"`
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/hosts/pc-open/reach", nil, &reach)
		return len(reach.Direct) > 0
	}, "the coordinator never learned where pc-open takes direct sessions")
	if reach.ID != open.a.ID() || !slices.Contains(reach.Direct, listen) {
		t.Fatalf("reach %+v, want %s at %s", reach, open.a.ID(), listen)
	}
	// Over HTTPS, trusting the coordinator's own CA by the fingerprint the
	// sign-in pins, as technicians use it.
	tina.server, tina.env = c.HTTPS, []string{"OUTPOST_CA_FINGERPRINT=" + c.CA}
	tina.login()
	tina.env = nil
	brokered := func(host string) int {
		var out struct {
			Events []struct{ Target, Detail string } `json:"events"`
		}
		c.MustDo("GET", "/v1/audit?action=connect&user=tina", nil, &out)
		n := 0
		for _, ev := range out.Events {
			if ev.Target == "host "+host && strings.HasPrefix(ev.Detail, "brokered") {
				n++
			}
		}
		return n
	}

	if r := tina.run("", "exec", "pc-open", "--", "/bin/echo", "hi"); r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("exec on pc-open: %v", r)
	}
	if n := brokered(open.a.ID()); n != 0 {
		t.Fatalf("pc-open takes direct sessions, yet the coordinator brokered %d", n)
	}
	tina.env = []string{"OUTPOST_VIA=coordinator"}
	if r := tina.run("", "exec", "pc-open", "--", "/bin/echo", "hi"); r.code != 0 || r.stdout != "hi\n" || brokered(open.a.ID()) != 1 {
		t.Fatalf("exec on pc-open through the coordinator: %v (brokered %d)", r, brokered(open.a.ID()))
	}
	tina.env = nil
	if r := tina.run("", "exec", "pc-natted", "--", "/bin/echo", "hi"); r.code != 0 || r.stdout != "hi\n" || brokered(natted.a.ID()) != 1 {
		t.Fatalf("exec on pc-natted (brokered): %v (brokered %d)", r, brokered(natted.a.ID()))
	}
	tina.env = []string{"OUTPOST_VIA=direct"}
	if r := tina.run("", "exec", "pc-natted", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "cannot be reached directly") {
		t.Fatalf("OUTPOST_VIA=direct to a host without direct sessions: %v", r)
	}
}
