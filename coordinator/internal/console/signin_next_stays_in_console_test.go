package console

import (
	"net/url"
	"strings"
	"testing"
)

// After sign-in the browser goes back to the console page it asked for,
// and nowhere else: not by dot segments (in any spelling a browser
// resolves), and not by characters a browser drops from a URL before it
// follows it (tab, newline), which net/http leaves in the Location header
// as they are.
func TestSignInNextCannotLeaveTheConsole(t *testing.T) {
	e := newEnv(t)
	for next, want := range map[string]string{
		"/ui/agents/ag-0123456789abcdef": "/ui/agents/ag-0123456789abcdef",
		"/ui/patches?office=hq#missing":  "/ui/patches?office=hq#missing",
		"/ui/../\t/evil.example":         "/ui/",
		"/ui/\t/../\n/evil.example":      "/ui/",
		"/ui/../v1/offices":              "/ui/",
		"/ui/%2e%2e/v1/offices":          "/ui/",
		"/ui/.%2E/%2e./v1":               "/ui/",
		"/ui/./":                         "/ui/",
		"/ui/.%2E/v1":                    "/ui/",
		"/ui/x?next=//evil.example":      "/ui/x?next=//evil.example",
	} {
		b := e.browser()
		b.get("/ui/login?next=" + url.QueryEscape(next))
		res, _ := b.post("/ui/login", url.Values{"token": {adminToken}, "next": {next}})
		got := res.Header.Get("Location")
		if got != want {
			t.Errorf("next %q: went to %q, want %q", next, got, want)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("next %q: a control character in Location %q", next, got)
		}
	}
}
