package api

import (
	"strings"
	"testing"
)

func TestComputersAddedByName(t *testing.T) {
	srv, st := newAPIWith(t, online{})
	for _, o := range []string{"berlin", "hamburg", "paris"} {
		if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"`+o+`"}`, token); code != 201 {
			t.Fatalf("create %s: %d %v", o, code, out)
		}
	}
	steps := []struct {
		name, method, path, body string
		code                     int
		errHas                   string
	}{
		{"add", "POST", "/v1/offices/berlin/computers", `{"hostnames":["PC-17","laptop-anna"," pc-18 "]}`, 201, ""},
		{"again is fine", "POST", "/v1/offices/berlin/computers", `{"hostnames":["pc-17"]}`, 201, ""},
		{"another office has it", "POST", "/v1/offices/hamburg/computers", `{"hostnames":["pc-17"]}`, 409, "already in office berlin"},
		{"bad hostname", "POST", "/v1/offices/berlin/computers", `{"hostnames":["pc 17"]}`, 400, `hostname "pc 17"`},
		{"none", "POST", "/v1/offices/berlin/computers", `{"hostnames":[]}`, 400, "hostnames is required"},
		{"unknown office", "POST", "/v1/offices/rome/computers", `{"hostnames":["x"]}`, 404, "office rome"},
		{"list unknown office", "GET", "/v1/offices/rome/computers", "", 404, "office rome"},
		{"remove", "DELETE", "/v1/offices/berlin/computers/pc-18", "", 204, ""},
		{"remove from the wrong office", "DELETE", "/v1/offices/hamburg/computers/laptop-anna", "", 404, "computer laptop-anna in office hamburg"},
	}
	for _, s := range steps {
		code, out := call(t, srv, s.method, s.path, s.body, token)
		if code != s.code || s.errHas != "" && !strings.Contains(out["error"].(string), s.errHas) {
			t.Fatalf("%s: %d %v, want %d mentioning %q", s.name, code, out, s.code, s.errHas)
		}
	}
	code, out := call(t, srv, "GET", "/v1/offices/berlin/computers", "", token)
	if code != 200 || len(out["computers"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}

	// Enrollment with a paris token: listed hostnames go to berlin, in any
	// case and by their first label; others stay with the token's office.
	for id, tc := range map[string]struct{ host, office string }{
		"ag-1": {"pc-17.corp.example", "berlin"},
		"ag-2": {"LAPTOP-ANNA", "berlin"},
		"ag-3": {"pc-99", "paris"},
	} {
		m := enrolled(t, st, "paris", id, tc.host)
		if m.Office != tc.office || m.Home != tc.office {
			t.Errorf("%s (%s) enrolled into office %s home %s, want %s", id, tc.host, m.Office, m.Home, tc.office)
		}
	}
	_, out = call(t, srv, "GET", "/v1/offices/berlin/computers", "", token)
	for _, c := range out["computers"].([]any) {
		c := c.(map[string]any)
		if c["member"] == "" || c["enrolled"] == nil {
			t.Errorf("computer %v: the member that enrolled is not recorded", c)
		}
	}
	// Removing berlin moves its listed computers to hamburg along with its
	// agents; a later enrollment of the name lands in hamburg.
	if code, out := call(t, srv, "DELETE", "/v1/offices/berlin?move_to=hamburg", "", token); code != 204 {
		t.Fatalf("remove berlin: %d %v", code, out)
	}
	if m := enrolled(t, st, "paris", "ag-4", "pc-17"); m.Office != "hamburg" {
		t.Errorf("pc-17 re-enrolled into %s, want hamburg", m.Office)
	}
}
