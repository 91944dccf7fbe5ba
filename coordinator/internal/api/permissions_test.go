package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// callHeader is call with request headers, returning the answer's too.
func callHeader(t *testing.T, srv *httptest.Server, method, path, body string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func grantSubjects(t *testing.T, v any) []string {
	t.Helper()
	out := []string{}
	for _, g := range v.([]any) {
		g := g.(map[string]any)
		s := g["subject"].(string)
		if g["deny"] == true {
			s = "deny:" + s
		}
		out = append(out, s)
	}
	return out
}

// A list is read with its etag, and a change that sends it back (If-Match
// or the body's etag) is refused with 409 when another admin changed the
// list in between; a change without one replaces the list as before.
func TestPermissionsChangeOnlyTheListRead(t *testing.T) {
	x := newAuthAPI(t)
	call(t, x.srv, "POST", "/v1/offices", `{"name":"hq"}`, token)
	enrolAgent(t, x.st, "hq", "ag-0000000000000007", "pc-7")
	for _, path := range []string{"/v1/offices/hq/permissions", "/v1/hosts/pc-7/permissions"} {
		t.Run(path, func(t *testing.T) {
			code, hdr, out := callHeader(t, x.srv, "GET", path, "", nil)
			etag, _ := out["etag"].(string)
			if code != 200 || etag == "" || hdr.Get("ETag") != `"`+etag+`"` {
				t.Fatalf("GET: %d, ETag header %q, body %v: want the list's etag in both", code, hdr.Get("ETag"), out)
			}
			// Admin A reads, admin B changes the list meanwhile.
			code, hdr, out = callHeader(t, x.srv, "PUT", path, `{"grants":[{"subject":"user:bob","rights":["view"]}]}`, map[string]string{"If-Match": `"` + etag + `"`})
			newTag, _ := out["etag"].(string)
			if code != 200 || newTag == "" || newTag == etag || hdr.Get("ETag") != `"`+newTag+`"` {
				t.Fatalf("PUT with the current etag: %d %v, ETag %q", code, out, hdr.Get("ETag"))
			}
			// A's change, made to what A read, is refused, and the list is B's.
			for _, tc := range []struct {
				body   string
				header map[string]string
			}{
				{`{"grants":[{"subject":"user:amy","rights":["view"]}]}`, map[string]string{"If-Match": `"` + etag + `"`}},
				{`{"grants":[{"subject":"user:amy","rights":["view"]}],"etag":"` + etag + `"}`, nil},
				{`{"grants":[{"subject":"user:amy","rights":["view"]}]}`, map[string]string{"If-Match": `W/"` + newTag + `"`}},
			} {
				code, hdr, out = callHeader(t, x.srv, "PUT", path, tc.body, tc.header)
				if code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "changed since it was read") || hdr.Get("ETag") != `"`+newTag+`"` {
					t.Fatalf("PUT %s %v with a stale etag: %d %v, ETag %q; want 409 with the current etag", tc.body, tc.header, code, out, hdr.Get("ETag"))
				}
			}
			_, _, out = callHeader(t, x.srv, "GET", path, "", nil)
			if got := grantSubjects(t, out["grants"]); !reflect.DeepEqual(got, []string{"user:bob"}) || out["etag"] != newTag {
				t.Fatalf("after refused changes: %v", out)
			}
			// The current etag (bare, or one of several), *, and none at all pass.
			for _, h := range []func() map[string]string{
				func() map[string]string { return map[string]string{"If-Match": newTag} },
				func() map[string]string { return nil },
				func() map[string]string {
					return map[string]string{"If-Match": `"nope", "` + permissionsTagOf(t, x, path) + `"`}
				},
				func() map[string]string { return map[string]string{"If-Match": "*"} },
			} {
				if code, _, out := callHeader(t, x.srv, "PUT", path, `{"grants":[{"subject":"user:amy","rights":["view"]}]}`, h()); code != 200 {
					t.Fatalf("PUT with %v: %d %v", h(), code, out)
				}
			}
			if code, _, out := callHeader(t, x.srv, "PUT", path, `{"grants":[],"etag":"abc"}`, map[string]string{"If-Match": `"def"`}); code != 400 {
				t.Fatalf("If-Match and etag differing: %d %v, want 400", code, out)
			}
		})
	}
}

// Of admins changing the list they all read at once, one wins; the others
// are told, and nothing of theirs is written over the winner's.
func TestConcurrentConditionalPermissionChanges(t *testing.T) {
	x := newAuthAPI(t)
	call(t, x.srv, "POST", "/v1/offices", `{"name":"hq"}`, token)
	path := "/v1/offices/hq/permissions"
	etag := permissionsTagOf(t, x, path)
	const admins = 8
	codes := make(chan int, admins)
	var wg sync.WaitGroup
	for i := range admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", x.srv.URL+path, strings.NewReader(fmt.Sprintf(`{"grants":[{"subject":"user:u%d","rights":["view"]}]}`, i)))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("If-Match", `"`+etag+`"`)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[200] != 1 || n[409] != admins-1 {
		t.Fatalf("answers %v, want one 200 and %d 409", n, admins-1)
	}
}

// permissionsTagOf reads the current etag of the list at path.
func permissionsTagOf(t *testing.T, x *authAPI, path string) string {
	t.Helper()
	_, _, out := callHeader(t, x.srv, "GET", path, "", nil)
	etag, ok := out["etag"].(string)
	if !ok || etag == "" {
		t.Fatalf("GET %s: no etag: %v", path, out)
	}
	return etag
}

// signedGrants returns the subjects of each permission list in the
// office's current signed policy, by host ("" the office's).
func signedGrants(t *testing.T, x *authAPI, office string) (uint64, map[string][]string) {
	t.Helper()
	p, err := x.st.Policy(office)
	if err != nil {
		t.Fatal(err)
	}
	pol := signedPolicy(t, p.Signed)
	out := map[string][]string{}
	for _, l := range pol.GetPermissions() {
		for _, g := range l.GetGrants() {
			out[l.GetHost()] = append(out[l.GetHost()], g.GetSubject()+"="+fmt.Sprint(rightsOf(g)))
		}
	}
	return pol.GetRevision(), out
}

func rightsOf(g *wire.Grant) []string {
	var out []string
	for _, r := range g.GetRights() {
		out = append(out, strings.ToLower(strings.TrimPrefix(r.String(), "RIGHT_")))
	}
	return out
}

// Deleting a group or a user takes its grants out of every list, signs the
// offices' policies anew so that hosts drop them, and says which lists
// lost grants; a group made again under the name starts with nothing.
func TestDeletingAGroupOrUserTakesItsGrantsEverywhere(t *testing.T) {
	x := newAuthAPI(t)
	mustCall := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, out := call(t, x.srv, method, path, body, token)
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
		}
		return out
	}
	mustCall("POST", "/v1/offices", `{"name":"hq"}`, 201)
	mustCall("POST", "/v1/offices", `{"name":"paris"}`, 201)
	enrolAgent(t, x.st, "hq", "ag-0000000000000007", "pc-7")
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, 201)
	mustCall("POST", "/v1/users", `{"name":"olga","password":"olga-password-1"}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["tina"]}`, 201)
	mustCall("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:hq-techs","rights":["view","command"]},{"subject":"user:olga","rights":["view"]}]}`, 200)
	mustCall("PUT", "/v1/hosts/pc-7/permissions", `{"grants":[{"subject":"group:hq-techs","rights":["files"]}]}`, 200)
	mustCall("PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"user:olga","rights":["view"]}]}`, 200)
	before, _ := signedGrants(t, x, "hq")
	parisBefore, _ := signedGrants(t, x, "paris")

	out := mustCall("DELETE", "/v1/groups/hq-techs", "", 200)
	removed := out["removed_from"].([]any)
	if len(removed) != 2 {
		t.Fatalf("removed_from: %v", out)
	}
	var scopes []string
	for _, l := range removed {
		l := l.(map[string]any)
		scopes = append(scopes, l["scope"].(string))
		if l["office"] != "hq" || l["revision"].(float64) <= float64(before) || !reflect.DeepEqual(grantSubjects(t, l["grants"]), []string{"group:hq-techs"}) {
			t.Errorf("removed_from entry %v: want office hq, a revision above %d and the grant taken out", l, before)
		}
	}
	if !reflect.DeepEqual(scopes, []string{"office hq", "host pc-7"}) {
		t.Errorf("scopes %v", scopes)
	}
	rev, signed := signedGrants(t, x, "hq")
	if rev <= before || !reflect.DeepEqual(signed, map[string][]string{"": {"user:olga=[view]"}}) {
		t.Fatalf("hq's policy after deleting the group: revision %d (was %d), lists %v", rev, before, signed)
	}
	if r, _ := signedGrants(t, x, "paris"); r != parisBefore {
		t.Errorf("paris, which had no grant to the group, was signed anew: %d, was %d", r, parisBefore)
	}
	ev := mustCall("GET", "/v1/audit?action=group.delete", "", 200)["events"].([]any)
	if len(ev) != 1 || ev[0].(map[string]any)["detail"] != "removed from the permissions of office hq and host pc-7" {
		t.Errorf("group.delete audit: %v", ev)
	}
	ev = mustCall("GET", "/v1/audit?host=pc-7&action=permissions.set", "", 200)["events"].([]any)
	if len(ev) != 2 || !strings.Contains(ev[0].(map[string]any)["detail"].(string), "group hq-techs deleted: took out allow group:hq-techs files") {
		t.Errorf("the host list's change is not in its audit trail: %v", ev)
	}

	// The group made again has none of the old rights.
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["tina"]}`, 201)
	if out := mustCall("GET", "/v1/offices/hq/permissions", "", 200); !reflect.DeepEqual(grantSubjects(t, out["grants"]), []string{"user:olga"}) {
		t.Fatalf("office hq: %v", out)
	}
	if out := mustCall("GET", "/v1/hosts/pc-7/permissions", "", 200); len(out["grants"].([]any)) != 0 {
		t.Fatalf("host pc-7: %v", out)
	}

	// A user, likewise, in every office.
	before = rev
	out = mustCall("DELETE", "/v1/users/olga", "", 200)
	if len(out["removed_from"].([]any)) != 2 {
		t.Fatalf("deleting olga: %v", out)
	}
	for _, o := range []string{"hq", "paris"} {
		if out := mustCall("GET", "/v1/offices/"+o+"/permissions", "", 200); len(out["grants"].([]any)) != 0 {
			t.Errorf("office %s after deleting olga: %v", o, out)
		}
	}
	if r, signed := signedGrants(t, x, "hq"); r <= before || len(signed) != 0 {
		t.Errorf("hq after deleting olga: revision %d (was %d), lists %v", r, before, signed)
	}
	if r, signed := signedGrants(t, x, "paris"); r <= parisBefore || len(signed) != 0 {
		t.Errorf("paris after deleting olga: revision %d (was %d), lists %v", r, parisBefore, signed)
	}
	ev = mustCall("GET", "/v1/audit?action=user.delete", "", 200)["events"].([]any)
	if len(ev) != 1 || ev[0].(map[string]any)["detail"] != "removed from the permissions of office hq and office paris" {
		t.Errorf("user.delete audit: %v", ev)
	}

	// Nothing to take out: an empty list, no revision.
	revs := len(x.notes.revs)
	if out := mustCall("DELETE", "/v1/users/tina", "", 200); len(out["removed_from"].([]any)) != 0 || out["user"] != "tina" {
		t.Errorf("deleting tina, in no list: %v", out)
	}
	if len(x.notes.revs) != revs {
		t.Errorf("deleting a user in no list signed %d revisions", len(x.notes.revs)-revs)
	}
	mustCall("DELETE", "/v1/groups/nosuch", "", 404)
	mustCall("DELETE", "/v1/users/admin", "", 400) // oneself
}

// An admin sees every grant that names a user, directly or through one of
// its groups, in every office's and host's list.
func TestUserPermissionsView(t *testing.T) {
	x := newAuthAPI(t)
	mustCall := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, out := call(t, x.srv, method, path, body, token)
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
		}
		return out
	}
	mustCall("POST", "/v1/offices", `{"name":"hq"}`, 201)
	mustCall("POST", "/v1/offices", `{"name":"paris"}`, 201)
	enrolAgent(t, x.st, "hq", "ag-0000000000000007", "pc-7")
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, 201)
	mustCall("POST", "/v1/users", `{"name":"rita","password":"rita-password-1","role":"read-only"}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["tina"]}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"paris-techs","members":["rita"]}`, 201)
	mustCall("PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"group:paris-techs","rights":["view"]},{"subject":"user:tina","rights":["view"]}]}`, 200)
	mustCall("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:hq-techs","rights":["view","command"]},{"subject":"user:rita","rights":["view"]}]}`, 200)
	mustCall("PUT", "/v1/hosts/pc-7/permissions", `{"grants":[{"subject":"user:tina","rights":["command"],"deny":true}]}`, 200)

	out := mustCall("GET", "/v1/users/tina/permissions", "", 200)
	got, _ := json.Marshal(out["permissions"])
	want := `[{"deny":false,"office":"hq","rights":["view","command"],"scope":"office hq","subject":"group:hq-techs"},` +
		`{"deny":false,"office":"paris","rights":["view"],"scope":"office paris","subject":"user:tina"},` +
		`{"deny":true,"host":"ag-0000000000000007","hostname":"pc-7","office":"hq","rights":["command"],"scope":"host pc-7","subject":"user:tina"}]`
	if string(got) != want || out["user"] != "tina" || fmt.Sprint(out["groups"]) != "[hq-techs]" {
		t.Fatalf("tina's permissions:\n%s\nwant:\n%s\n(%v)", got, want, out)
	}
	mustCall("GET", "/v1/users/nosuch/permissions", "", 404)
	// Like every user route, for admins only.
	for _, u := range []string{"tina", "rita"} {
		if code, out := call(t, x.srv, "GET", "/v1/users/tina/permissions", "", x.login(t, u, u+"-password-1")); code != 403 {
			t.Errorf("%s: %d %v, want 403", u, code, out)
		}
	}
}
