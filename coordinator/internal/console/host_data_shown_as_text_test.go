package console

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// xss is markup that would run script if a page let it through: as an
// element, out of a quoted attribute, or as a javascript: link.
const xss = `"'><svg/onload=alert(1)>javascript:alert(1)`

// What enrolled computers say about themselves — hostname, addresses,
// version, why an upgrade was refused, what hung, each item's id, kind and
// message, a relay's staging problem, the records a host sends to the
// audit log — and what less trusted people type — an operator's office
// description and location, a vendor feed's patch titles — reaches the
// admin's pages as text: never as markup, an attribute or a link.
func TestHostDataShownAsText(t *testing.T) {
	e := newEnv(t)
	if code := e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq", "description": xss, "location": xss}, nil); code != http.StatusCreated {
		t.Fatalf("office: %d", code)
	}
	const id = "ag-00000000000000b1"
	e.enrolAgent("hq", id, `h"><svg/onload=alert(1)>`)
	if _, err := e.st.UpdateMember(id, func(m *store.Member) {
		m.Address, m.Addresses, m.Version = xss, []string{xss}, xss
		m.UpgradeProblem, m.LastHang = xss, xss
		m.Report = &store.Report{Revision: 1, At: time.Now(), RebootItems: []string{xss}, RebootSince: time.Now(),
			Items: []store.ItemStatus{{ID: xss, Kind: xss, Status: "failed", Message: xss, At: time.Now()}}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AppendAudit(store.AuditEvent{At: time.Now(), Actor: xss, Action: xss, Target: xss, Detail: xss, Source: id, Remote: xss}); err != nil {
		t.Fatal(err)
	}
	sha := e.upload("hello-1.0.tar.gz", "hello")
	feed := "patches:\n  - id: OUT-1\n    title: '" + strings.ReplaceAll(xss, "'", "''") + "'\n    severity: high\n    package: hello\n    fixed_version: 2.0.0\n    artifact: " + sha + "\n"
	if code := e.apiDo("POST", "/v1/patches/import", feed, nil); code >= 300 {
		t.Fatalf("feed: %d", code)
	}
	b := e.signIn("", adminToken)
	// Each page and how many times it shows the hostile text, escaped: the
	// test fails if a page stops showing what it is meant to check.
	for page, shown := range map[string]int{"/ui/": 3, "/ui/offices": 2, "/ui/offices/hq": 3, "/ui/agents": 5, "/ui/agents/" + id: 12,
		"/ui/agents/" + id + "/permissions": 1, "/ui/patches": 1, "/ui/patches/OUT-1": 1, "/ui/audit": 5} {
		res, body := b.get(page)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", page, res.StatusCode, body)
		}
		if got := strings.Count(body, "&lt;svg/onload=alert(1)&gt;"); got < shown {
			t.Errorf("%s shows the hostile text %d times, want %d", page, got, shown)
		}
		for _, raw := range []string{"<svg", `"'>`, `href="javascript:`, `src="javascript:`} {
			if strings.Contains(body, raw) {
				t.Errorf("%s lets %q through as markup", page, raw)
			}
		}
	}
}
