package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

func freeUDPOn(t *testing.T, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
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
		return tc.run("", "exec", "pc-direct", "--", "/bin/echo", "glass")
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
}
