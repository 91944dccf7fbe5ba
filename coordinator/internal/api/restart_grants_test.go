package api

import (
	"strings"
	"testing"
	"time"
)

// DELETE /v1/groups/{name} (deleteGroupAndGrants,
// subjectperms.go) takes the group and its grants out of the store in one
// bbolt transaction (RemoveGroup) and only then signs the offices'
// policies anew (answerDeleted → resign) so that hosts drop the grants. A
// kill between the two leaves the store without the group and its grants
// but the signed policy the hosts enforce still granting group:NAME. The
// retry answers 404 and signs nothing; nothing at start did either (the crash review). A
// group made again under the name (new members) then holds the deleted
// group's rights on the office's hosts, which the API shows as granting
// nothing: the promise "a group made again under the name starts with
// nothing" is broken. (DELETE /v1/users/{name} has the same two steps.)
// Reconcile, at start and hourly, signs what was stored and never signed.
func TestGroupDeletedBeforeAKillLosesItsSignedGrantsAtStart(t *testing.T) {
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
	enrolAgent(t, x.st, "hq", "ag-0000000000000007", "pc-7")
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, 201)
	mustCall("POST", "/v1/users", `{"name":"mallory","password":"mallory-password-1"}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["tina"]}`, 201)
	mustCall("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:hq-techs","rights":["view","command"]}]}`, 200)

	// deleteGroupAndGrants' first durable step, then the kill.
	if _, err := x.st.RemoveGroup("hq-techs", time.Now()); err != nil {
		t.Fatal(err)
	}

	// After the restart: the admin retries, then makes the group again.
	startUp(t, x.api)
	code, _ := call(t, x.srv, "DELETE", "/v1/groups/hq-techs", "", token)
	mustCall("POST", "/v1/groups", `{"name":"hq-techs","members":["mallory"]}`, 201)

	shown := mustCall("GET", "/v1/offices/hq/permissions", "", 200)
	rev, signed := signedGrants(t, x, "hq")
	for _, g := range signed[""] {
		if strings.HasPrefix(g, "group:hq-techs=") {
			t.Fatalf("hq's signed policy (revision %d) still grants %s to the group made again (members: mallory); "+
				"the API shows grants %v; the retried delete answered %d", rev, g, shown["grants"], code)
		}
	}
}
