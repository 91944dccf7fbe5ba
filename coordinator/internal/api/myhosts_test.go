package api

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// A technician, who has no API role, lists the hosts where it has rights
// and which rights: from the office's list and the host's own, its own
// grants and its groups', deny wins; hosts it has nothing on, relays and
// other offices are not shown.
func TestMyHostsListsWhereTheUserHasRights(t *testing.T) {
	x := newAuthAPI(t)
	for _, o := range []string{"hq", "paris"} {
		if err := x.st.CreateOffice(store.Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	enrol := func(id, hostname, office, role string) { enrolIn(t, x.st, id, hostname, office, role) }
	enrol("ag-01", "pc-1", "hq", "agent")
	enrol("ag-02", "pc-2", "hq", "agent")
	enrol("ag-03", "pc-3", "paris", "agent")
	enrol("ag-04", "pc-1", "paris", "agent") // a second pc-1
	enrol("rl-01", "relay-hq", "hq", "relay")
	mustCall := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, out := call(t, x.srv, method, path, body, token)
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
		}
		return out
	}
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, 201)
	mustCall("POST", "/v1/users", `{"name":"olga","password":"olga-password-1"}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["tina"]}`, 201)
	mustCall("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:hq-techs","rights":["view","command"]}]}`, 200)
	mustCall("PUT", "/v1/hosts/ag-02/permissions", `{"grants":[{"subject":"user:tina","rights":["command"],"deny":true},{"subject":"group:hq-techs","rights":["files"]}]}`, 200)
	mustCall("PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"user:olga","rights":["view"]}]}`, 200)
	mustCall("PUT", "/v1/hosts/ag-04/permissions", `{"grants":[{"subject":"user:tina","rights":["view"]}]}`, 200)

	tina := x.login(t, "tina", "tina-password-1")
	hosts := func(query, tok string) []string {
		t.Helper()
		code, out := call(t, x.srv, "GET", "/v1/me/hosts"+query, "", tok)
		if code != 200 {
			t.Fatalf("GET /v1/me/hosts%s: %d %v", query, code, out)
		}
		got := []string{}
		for _, h := range out["hosts"].([]any) {
			h := h.(map[string]any)
			shared := ""
			if h["shared_hostname"] == true {
				shared = " shared"
			}
			got = append(got, fmt.Sprintf("%s %s %s %v%s", h["office"], h["hostname"], h["id"], h["rights"], shared))
		}
		return got
	}
	want := []string{"hq pc-1 ag-01 [view command] shared", "hq pc-2 ag-02 [view files]", "paris pc-1 ag-04 [view] shared"}
	if got := hosts("", tina); !reflect.DeepEqual(got, want) {
		t.Fatalf("tina's hosts:\n%q\nwant\n%q", got, want)
	}
	if got := hosts("?office=paris", tina); !reflect.DeepEqual(got, want[2:]) {
		t.Fatalf("tina's hosts in paris: %q", got)
	}
	if got := hosts("?q=PC-2", tina); !reflect.DeepEqual(got, want[1:2]) {
		t.Fatalf("tina's hosts matching pc-2: %q", got)
	}
	olga := x.login(t, "olga", "olga-password-1")
	if got := hosts("", olga); !reflect.DeepEqual(got, []string{"paris pc-3 ag-03 [view]", "paris pc-1 ag-04 [view] shared"}) &&
		!reflect.DeepEqual(got, []string{"paris pc-1 ag-04 [view] shared", "paris pc-3 ag-03 [view]"}) {
		t.Fatalf("olga's hosts: %q", got)
	}
	// The bootstrap admin token is nobody on hosts.
	if got := hosts("", token); len(got) != 0 {
		t.Fatalf("the bootstrap token's hosts: %q", got)
	}
	// Whether an office exists is not a technician's to learn; an admin
	// is told.
	if got := hosts("?office=nowhere", tina); len(got) != 0 {
		t.Fatalf("tina's hosts in an unknown office: %q", got)
	}
	if code, out := call(t, x.srv, "GET", "/v1/me/hosts?office=nowhere", "", token); code != 404 {
		t.Fatalf("an unknown office, to an admin: %d %v", code, out)
	}
	// Where a host takes sessions is told only to whoever may work on it.
	if code, out := call(t, x.srv, "GET", "/v1/hosts/ag-01/reach", "", tina); code != 200 || out["hostname"] != "pc-1" {
		t.Fatalf("reach of a host tina works on: %d %v", code, out)
	}
	for _, host := range []string{"ag-03", "pc-3", "pc-nosuch", "ag-0"} {
		code, out := call(t, x.srv, "GET", "/v1/hosts/"+host+"/reach", "", tina)
		if code != 404 || out["id"] != nil || out["hostname"] != nil || out["direct"] != nil {
			t.Fatalf("reach of %s, where tina has no right: %d %v", host, code, out)
		}
		if code, _ := call(t, x.srv, "POST", "/v1/hosts/"+host+"/session-token", "", tina); code != 404 {
			t.Fatalf("session token for %s, where tina has no right: %d", host, code)
		}
	}
	// Leaving the group takes the office's grants away at once.
	mustCall("PATCH", "/v1/groups/hq-techs", `{"remove":["tina"]}`, 200)
	tina = x.login(t, "tina", "tina-password-1")
	if got := hosts("", tina); !reflect.DeepEqual(got, want[2:]) {
		t.Fatalf("tina's hosts out of the group: %q", got)
	}
}

// The manage right delegates permission lists: lena, with no API role,
// manages office hq's list and its hosts' (not one whose list denies her
// the right), and nothing of office paris; she cannot tell which offices
// or hosts exist elsewhere; a read-only user reads every list and changes
// none.
func TestManageRightDelegatesAnOfficesPermissions(t *testing.T) {
	x := newAuthAPI(t)
	for _, o := range []string{"hq", "paris"} {
		if err := x.st.CreateOffice(store.Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []struct{ id, host, office string }{{"ag-01", "pc-1", "hq"}, {"ag-02", "pc-2", "hq"}, {"ag-03", "pc-3", "paris"}} {
		enrolIn(t, x.st, m.id, m.host, m.office, "agent")
	}
	admin := func(method, path, body string, want int) {
		t.Helper()
		if code, out := call(t, x.srv, method, path, body, token); code != want {
			t.Fatalf("admin %s %s: %d %v, want %d", method, path, code, out, want)
		}
	}
	admin("POST", "/v1/users", `{"name":"lena","password":"lena-password-1"}`, 201)
	admin("POST", "/v1/users", `{"name":"olga","password":"olga-password-1","role":"read-only"}`, 201)
	admin("POST", "/v1/groups", `{"name":"hq-leads","members":["lena"]}`, 201)
	admin("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:hq-leads","rights":["manage"]}]}`, 200)
	admin("PUT", "/v1/hosts/ag-02/permissions", `{"grants":[{"subject":"user:lena","rights":["manage"],"deny":true}]}`, 200)
	admin("PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"user:olga","rights":["view"]}]}`, 200)
	lena, olga := x.login(t, "lena", "lena-password-1"), x.login(t, "olga", "olga-password-1")
	as := func(tok, method, path, body string, want int, says string) {
		t.Helper()
		code, out := call(t, x.srv, method, path, body, tok)
		if code != want || (says != "" && !strings.Contains(fmt.Sprint(out["error"]), says)) {
			t.Fatalf("%s %s: %d %v, want %d saying %q", method, path, code, out, want, says)
		}
	}
	keep := `{"subject":"group:hq-leads","rights":["manage"]}`
	as(lena, "GET", "/v1/offices/hq/permissions", "", 200, "")
	as(lena, "PUT", "/v1/offices/hq/permissions", `{"grants":[`+keep+`,{"subject":"user:olga","rights":["view","command"]}]}`, 200, "")
	as(lena, "PUT", "/v1/hosts/pc-1/permissions", `{"grants":[{"subject":"user:olga","rights":["files"]}]}`, 200, "")
	as(lena, "PUT", "/v1/hosts/ag-02/permissions", `{"grants":[]}`, 403, "changing the permissions of host ag-02 needs the manage right there or the admin role")
	as(lena, "GET", "/v1/offices/paris/permissions", "", 403, "reading the permissions of office paris needs the manage right there")
	as(lena, "PUT", "/v1/offices/paris/permissions", `{"grants":[]}`, 403, "")
	as(lena, "PUT", "/v1/hosts/ag-03/permissions", `{"grants":[]}`, 403, "")
	// Whether an office or a host exists is not told.
	as(lena, "GET", "/v1/offices/nowhere/permissions", "", 403, "office nowhere")
	as(lena, "PUT", "/v1/hosts/pc-nosuch/permissions", `{"grants":[]}`, 403, "host pc-nosuch")
	// Nothing else comes with it.
	as(lena, "POST", "/v1/users", `{"name":"eve","password":"eve-password-12"}`, 403, "")
	as(lena, "PATCH", "/v1/offices/hq", `{"description":"mine"}`, 403, "")
	// A read-only user reads every list, changes none; admins alone see
	// what is missing.
	as(olga, "GET", "/v1/offices/paris/permissions", "", 200, "")
	as(olga, "GET", "/v1/hosts/pc-2/permissions", "", 200, "")
	as(olga, "PUT", "/v1/offices/paris/permissions", `{"grants":[]}`, 403, "needs the manage right there or the admin role")
	as(olga, "GET", "/v1/offices/nowhere/permissions", "", 404, "")
	// What lena changed is hers in the audit log.
	code, out := call(t, x.srv, "GET", "/v1/audit?user=lena&action=permissions.set", "", token)
	if evs, _ := out["events"].([]any); code != 200 || len(evs) != 2 {
		t.Fatalf("lena's changes in the audit log: %d %v", code, out)
	}
	// Giving the right up ends it.
	as(lena, "PUT", "/v1/offices/hq/permissions", `{"grants":[]}`, 200, "")
	as(lena, "GET", "/v1/offices/hq/permissions", "", 403, "")
}

// enrolIn enrols member id in office straight in the store.
func enrolIn(t *testing.T, st *store.Store, id, hostname, office, role string) {
	t.Helper()
	tok := store.Token{ID: "t-" + id, Hash: "h-" + id, Office: office, Role: role, Uses: 1, Expires: time.Now().Add(time.Hour)}
	if err := st.CreateToken(tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll(tok.Hash, time.Now(), func(store.Token, store.Office) (store.Member, error) {
		return store.Member{ID: id, Hostname: hostname, Office: office, Home: office, Role: role}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A host's own list belongs to its home office: the manager of an office
// it visits cannot change it, and so cannot keep rights on it once it has
// gone home.
func TestManagerOfAVisitedOfficeCannotTakeAVisitingHost(t *testing.T) {
	x := newAuthAPI(t)
	for _, o := range []string{"hq", "paris"} {
		if err := x.st.CreateOffice(store.Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	enrolIn(t, x.st, "ag-ceo", "ceo-laptop", "hq", "agent")
	if _, err := x.st.UpdateMember("ag-ceo", func(m *store.Member) { m.Office = "paris" }); err != nil { // visiting paris
		t.Fatal(err)
	}
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"lena","password":"lena-password-1"}`, token); code != 201 {
		t.Fatal(code, out)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"user:lena","rights":["manage"]}]}`, token); code != 200 {
		t.Fatal(code, out)
	}
	lena := x.login(t, "lena", "lena-password-1")
	code, out := call(t, x.srv, "PUT", "/v1/hosts/ag-ceo/permissions", `{"grants":[{"subject":"user:lena","rights":["command","manage"]}]}`, lena)
	if code != 403 {
		t.Fatalf("paris's manager changed a visiting hq laptop's list: %d %v", code, out)
	}
	if code, _ := call(t, x.srv, "PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"user:lena","rights":["manage"]}]}`, token); code != 200 {
		t.Fatal(code)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/hosts/ag-ceo/permissions", `{"grants":[{"subject":"user:lena","rights":["view"]}]}`, lena); code != 200 {
		t.Fatalf("hq's manager changing hq's laptop's list: %d %v", code, out)
	}
}
