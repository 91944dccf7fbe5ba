package console

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A host's permission page opened by hostname (the API finds a host by
// either) saves to, and links to, the host by its member id: the
// hostname is the host's own say, and by the time the admin saves,
// another computer may go by it; and one such as "a/../../users" must not
// make a link that leads somewhere else.
func TestHostPermissionsOpenedByHostnameNameTheHostByID(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	b := e.signIn("", adminToken)
	for _, tc := range []struct{ id, hostname string }{
		{"ag-00000000000000c1", "pc-17"},
		{"ag-00000000000000c2", "a/../../users/admin"},
	} {
		e.enrolAgent("hq", tc.id, tc.hostname)
		res, body := b.get("/ui/agents/" + url.PathEscape(tc.hostname) + "/permissions")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", tc.hostname, res.StatusCode, body)
		}
		want := "/ui/agents/" + tc.id + "/permissions"
		if got := postActions(body); !slices.Equal(got, []string{want, "/ui/logout"}) {
			t.Errorf("%s: forms post to %q, want %s", tc.hostname, got, want)
		}
		for _, m := range hrefAttr.FindAllStringSubmatch(body, -1) {
			if h := html.UnescapeString(m[1]); strings.HasPrefix(h, "/ui/agents/") && h != "/ui/agents/"+tc.id {
				t.Errorf("%s: a link to %q, want the host by its id", tc.hostname, h)
			}
		}
	}
}

var hrefAttr = regexp.MustCompile(`href="([^"]*)"`)
