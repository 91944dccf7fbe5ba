package api

import (
	"fmt"
	"testing"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// The manage right on an office covers that office's list and the lists of
// its hosts, nothing else: the manager of a laptop's home office reads the
// laptop's own list, but not, through it, the list of the office it visits.
func TestAHomeManagerDoesNotReadTheVisitedOfficesList(t *testing.T) {
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
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"mike","password":"mike-password-1"}`, token); code != 201 {
		t.Fatal(code, out)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"user:mike","rights":["manage"]}]}`, token); code != 200 {
		t.Fatal(code, out)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/offices/paris/permissions", `{"grants":[{"subject":"group:paris-secret-admins","rights":["command","files","manage"]}]}`, token); code != 200 {
		t.Fatal(code, out)
	}
	mike := x.login(t, "mike", "mike-password-1")
	if code, out := call(t, x.srv, "GET", "/v1/offices/paris/permissions", "", mike); code != 403 {
		t.Fatalf("hq's manager read paris's list directly: %d %v", code, out)
	}
	code, out := call(t, x.srv, "GET", "/v1/hosts/ag-ceo/permissions", "", mike)
	if code != 200 {
		t.Fatalf("hq's manager reading hq's laptop's list: %d %v", code, out)
	}
	if og, ok := out["office_grants"].([]any); ok && len(og) > 0 {
		t.Errorf("hq's manager (403 on GET /v1/offices/paris/permissions) got paris's whole list through the visiting laptop's view: office_grants=%v; want it left out (or only hq's) for a caller without the read-only role", fmt.Sprint(og))
	}
}
