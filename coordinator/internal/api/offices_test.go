package api

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

func TestOfficeRemoveMovesComputers(t *testing.T) {
	srv, st := newAPIWith(t, online{})
	for _, o := range []string{"berlin", "hamburg", "paris"} {
		if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"`+o+`"}`, token); code != 201 {
			t.Fatalf("create %s: %d %v", o, code, out)
		}
	}
	enrolled(t, st, "hamburg", "ag-1", "pc-1")
	enrolled(t, st, "hamburg", "ag-2", "pc-2")
	// ag-3's home is hamburg but it sits in paris's range now: it must not
	// be left with a home that no longer exists.
	enrolled(t, st, "paris", "ag-3", "laptop")
	if _, err := st.UpdateMember("ag-3", func(m *store.Member) { m.Home = "hamburg" }); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path string
		code       int
		errHas     string
	}{
		{"refused while computers are in it", "/v1/offices/hamburg", 409, "office hamburg still has 3 computers (laptop, pc-1, pc-2): say where they go (outpost office rm hamburg --move-to OTHER; move_to in the API) or move them first"},
		{"unknown office", "/v1/offices/rome", 404, "office rome (to remove) does not exist"},
		{"move to an unknown office", "/v1/offices/hamburg?move_to=rome", 404, "office rome (move_to) does not exist"},
		{"move to itself", "/v1/offices/hamburg?move_to=hamburg", 400, "is the office being removed"},
		{"move to berlin", "/v1/offices/hamburg?move_to=berlin", 204, ""},
		{"gone", "/v1/offices/hamburg", 404, "office hamburg (to remove) does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, srv, "DELETE", tc.path, "", token)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, out)
			}
			if tc.errHas != "" && !strings.Contains(out["error"].(string), tc.errHas) {
				t.Fatalf("error %q does not mention %q", out["error"], tc.errHas)
			}
		})
	}
	for id, want := range map[string][2]string{"ag-1": {"berlin", "berlin"}, "ag-2": {"berlin", "berlin"}, "ag-3": {"berlin", "paris"}} {
		m, err := st.Member(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Home != want[0] || m.Office != want[1] {
			t.Errorf("%s: home %s office %s, want home %s office %s", id, m.Home, m.Office, want[0], want[1])
		}
	}
	if toks, _ := st.Tokens("hamburg"); len(toks) != 0 {
		t.Errorf("the removed office's tokens are left: %v", toks)
	}
	// An empty office goes without move_to.
	if code, out := call(t, srv, "DELETE", "/v1/offices/paris?move_to=", "", token); code != 409 {
		t.Fatalf("paris still has ag-3: %d %v", code, out)
	}
}
