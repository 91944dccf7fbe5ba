package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

const hqList = `{"office":"hq","grants":[{"subject":"group:hq-techs","rights":["view"]},{"subject":"user:tom","rights":["command"],"deny":true}],"etag":"e1"}`

func TestPermSetAddRemove(t *testing.T) {
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
		// ifMatch is the If-Match header each request must carry, in order
		// ("" none).
		ifMatch []string
	}{
		{
			name: "perm set without grants would clear the list: refused",
			args: []string{"perm", "set", "--office", "hq"},
			want: want{code: 2, stderrHas: []string{"outpost: perm set: this would remove every grant of office hq; pass --none to mean it\n"}},
		},
		{
			name: "perm set --none clears it, and says what it removed",
			args: []string{"perm", "set", "--host", "pc-7", "--none"},
			api: []exchange{
				{method: "GET", target: "/v1/hosts/pc-7/permissions", answer: `{"host":"ag-07","office":"hq","grants":[{"subject":"user:tina","rights":["view","files"]}],"etag":"e0"}`},
				{method: "PUT", target: "/v1/hosts/pc-7/permissions", body: `{"grants":[]}`,
					answer: `{"host":"ag-07","office":"hq","grants":[],"revision":5,"etag":"e1"}`}},
			want: want{stdout: "SCOPE  SUBJECT  EFFECT  RIGHTS\nsigned into policy revision 5 of office hq; connected hosts are told now\n",
				stderr: "removed: user:tina=view,files\n"},
			ifMatch: []string{"", ""},
		},
		{
			name: "perm set that puts a typo right is not taken for a typo",
			args: []string{"perm", "set", "--office", "hq", "user:tina=view"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[{"subject":"user:tnia","rights":["view"]}],"etag":"e0"}`},
				{method: "PUT", target: "/v1/offices/hq/permissions", body: `{"grants":[{"subject":"user:tina","rights":["view"],"deny":false}]}`,
					answer: `{"office":"hq","grants":[{"subject":"user:tina","rights":["view"]}],"revision":7}`}},
			want: want{stdout: "SCOPE      SUBJECT    EFFECT  RIGHTS\noffice hq  user:tina  allow   view\nsigned into policy revision 7 of office hq; connected hosts are told now\n",
				stderr: "removed: user:tnia=view\n"},
		},
		{
			name: "perm set with a typo of a subject whose grants it replaced says so",
			args: []string{"perm", "set", "--office", "hq", "group:hq-tech=view,command"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[{"subject":"group:hq-techs","rights":["view","command"]},{"subject":"user:tom","rights":["view","files"]}],"etag":"e0"}`},
				{method: "PUT", target: "/v1/offices/hq/permissions", body: `{"grants":[{"subject":"group:hq-tech","rights":["view","command"],"deny":false}]}`,
					answer: `{"office":"hq","grants":[{"subject":"group:hq-tech","rights":["view","command"]}],"revision":6,"warnings":["there is no group hq-tech yet: this grant applies once there is (outpost group list)"]}`}},
			want: want{stdout: "SCOPE      SUBJECT        EFFECT  RIGHTS\noffice hq  group:hq-tech  allow   view,command\nsigned into policy revision 6 of office hq; connected hosts are told now\n",
				stderr: "removed: group:hq-techs=view,command\nremoved: user:tom=view,files\n" +
					"warning: group:hq-tech was granted and group:hq-techs removed: did you mean group:hq-techs? (perm add changes only the grants it names)\n" +
					"warning: there is no group hq-tech yet: this grant applies once there is (outpost group list)\n"},
		},
		{
			name: "perm set --none with grants is a contradiction",
			args: []string{"perm", "set", "--office", "hq", "--none", "user:tina=view"},
			want: want{code: 2, stderrHas: []string{"--none clears the list"}},
		},
		{
			name: "perm add merges into the list read, on condition that it is still that list",
			args: []string{"perm", "add", "--office", "hq", "group:hq-techs=command,view", "user:tina=files"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hq/permissions", answer: hqList},
				{method: "PUT", target: "/v1/offices/hq/permissions",
					body:   `{"grants":[{"subject":"group:hq-techs","rights":["view","command"],"deny":false},{"subject":"user:tom","rights":["command"],"deny":true},{"subject":"user:tina","rights":["files"],"deny":false}]}`,
					answer: `{"office":"hq","grants":[{"subject":"group:hq-techs","rights":["view","command"]},{"subject":"user:tom","rights":["command"],"deny":true},{"subject":"user:tina","rights":["files"]}],"revision":7,"etag":"e2"}`},
			},
			want: want{stdout: "" +
				"SCOPE      SUBJECT         EFFECT  RIGHTS\n" +
				"office hq  group:hq-techs  allow   view,command\n" +
				"office hq  user:tom        deny    command\n" +
				"office hq  user:tina       allow   files\n" +
				"signed into policy revision 7 of office hq; connected hosts are told now\n"},
			ifMatch: []string{"", `"e1"`},
		},
		{
			name: "a deny is added as a deny, apart from the allow of the same subject",
			args: []string{"perm", "add", "--host", "pc-7", "deny:group:hq-techs=files"},
			api: []exchange{
				{method: "GET", target: "/v1/hosts/pc-7/permissions", answer: `{"host":"ag-07","office":"hq","grants":[{"subject":"group:hq-techs","rights":["view"]}],"office_grants":[],"etag":"e1"}`},
				{method: "PUT", target: "/v1/hosts/pc-7/permissions",
					body:   `{"grants":[{"subject":"group:hq-techs","rights":["view"],"deny":false},{"subject":"group:hq-techs","rights":["files"],"deny":true}]}`,
					answer: `{"host":"ag-07","office":"hq","grants":[],"revision":8,"etag":"e2"}`},
			},
			want:    want{stdout: "SCOPE  SUBJECT  EFFECT  RIGHTS\nsigned into policy revision 8 of office hq; connected hosts are told now\n"},
			ifMatch: []string{"", `"e1"`},
		},
		{
			name: "another admin's change meanwhile: read again, and keep it",
			args: []string{"perm", "add", "--office", "hq", "user:tina=view"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hq/permissions", answer: hqList},
				{method: "PUT", target: "/v1/offices/hq/permissions",
					body:   `{"grants":[{"subject":"group:hq-techs","rights":["view"],"deny":false},{"subject":"user:tom","rights":["command"],"deny":true},{"subject":"user:tina","rights":["view"],"deny":false}]}`,
					status: 409, answer: `{"error":"the permission list of office hq changed since it was read"}`},
				{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[{"subject":"user:olga","rights":["view"]}],"etag":"e9"}`},
				{method: "PUT", target: "/v1/offices/hq/permissions",
					body:   `{"grants":[{"subject":"user:olga","rights":["view"],"deny":false},{"subject":"user:tina","rights":["view"],"deny":false}]}`,
					answer: `{"office":"hq","grants":[{"subject":"user:olga","rights":["view"]},{"subject":"user:tina","rights":["view"]}],"revision":9,"etag":"e10"}`},
			},
			want: want{stdout: "" +
				"SCOPE      SUBJECT    EFFECT  RIGHTS\n" +
				"office hq  user:olga  allow   view\n" +
				"office hq  user:tina  allow   view\n" +
				"signed into policy revision 9 of office hq; connected hosts are told now\n"},
			ifMatch: []string{"", `"e1"`, "", `"e9"`},
		},
		{
			name: "a grant the list has already: nothing is written",
			args: []string{"perm", "add", "--office", "hq", "group:hq-techs=view"},
			api:  []exchange{{method: "GET", target: "/v1/offices/hq/permissions", answer: hqList}},
			want: want{stdout: "" +
				"SCOPE      SUBJECT         EFFECT  RIGHTS\n" +
				"office hq  group:hq-techs  allow   view\n" +
				"office hq  user:tom        deny    command\n",
				stderr: "nothing to change: the permission list of office hq has these grants already\n"},
		},
		{
			name: "perm remove takes rights, then a whole grant, and leaves the rest",
			args: []string{"perm", "remove", "--office", "hq", "group:hq-techs=view", "deny:user:tom"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[{"subject":"group:hq-techs","rights":["view","files"]},{"subject":"user:tom","rights":["command"],"deny":true},{"subject":"user:olga","rights":["view"]}],"etag":"e1"}`},
				{method: "PUT", target: "/v1/offices/hq/permissions",
					body:   `{"grants":[{"subject":"group:hq-techs","rights":["files"],"deny":false},{"subject":"user:olga","rights":["view"],"deny":false}]}`,
					answer: `{"office":"hq","grants":[{"subject":"group:hq-techs","rights":["files"]},{"subject":"user:olga","rights":["view"]}],"revision":3,"etag":"e2"}`},
			},
			want: want{stdout: "" +
				"SCOPE      SUBJECT         EFFECT  RIGHTS\n" +
				"office hq  group:hq-techs  allow   files\n" +
				"office hq  user:olga       allow   view\n" +
				"signed into policy revision 3 of office hq; connected hosts are told now\n"},
			ifMatch: []string{"", `"e1"`},
		},
		{
			name: "perm remove of an allow does not take a deny: nothing is written",
			args: []string{"perm", "remove", "--office", "hq", "user:tom"},
			api:  []exchange{{method: "GET", target: "/v1/offices/hq/permissions", answer: hqList}},
			want: want{code: 1, stderr: "outpost: perm remove: nothing changed: the permission list of office hq has no allow grant for user:tom (it has a deny grant for it: name it as deny:user:tom); see outpost perm show\n"},
		},
		{
			name: "perm remove of a right the grant lacks: nothing is written",
			args: []string{"perm", "remove", "--office", "hq", "group:hq-techs=view", "group:hq-techs=files"},
			api:  []exchange{{method: "GET", target: "/v1/offices/hq/permissions", answer: hqList}},
			want: want{code: 1, stderr: "outpost: perm remove: nothing changed: the permission list of office hq has no allow grant of files for group:hq-techs; see outpost perm show\n"},
		},
		{
			name: "perm remove of a bad subject is a usage error",
			args: []string{"perm", "remove", "--office", "hq", "tina"},
			want: want{code: 2, stderrHas: []string{`"tina": want [deny:]user:NAME or [deny:]group:NAME`}},
		},
		{
			name: "a coordinator that gives no etag: refused rather than risk another admin's change",
			args: []string{"perm", "add", "--office", "hq", "user:tina=view"},
			api:  []exchange{{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[]}`}},
			want: want{code: 1, stderrHas: []string{"gives no etag for the permission list of office hq", "outpost perm set"}},
		},
		{
			name: "perm show --user lists every grant naming the user or its groups",
			args: []string{"perm", "show", "--user", "tina"},
			api: []exchange{{method: "GET", target: "/v1/users/tina/permissions", answer: `{"user":"tina","groups":["hq-techs"],"permissions":[` +
				`{"scope":"office hq","office":"hq","subject":"group:hq-techs","rights":["view","command"],"deny":false},` +
				`{"scope":"host pc-7","office":"hq","host":"ag-07","hostname":"pc-7","subject":"user:tina","rights":["command"],"deny":true}]}`}},
			want: want{stdout: "" +
				"SCOPE      SUBJECT         EFFECT  RIGHTS\n" +
				"office hq  group:hq-techs  allow   view,command\n" +
				"host pc-7  user:tina       deny    command\n"},
		},
		{
			name: "perm show --user of a user no list names",
			args: []string{"perm", "show", "--user", "tom"},
			api:  []exchange{{method: "GET", target: "/v1/users/tom/permissions", answer: `{"user":"tom","groups":["a","b"],"permissions":[]}`}},
			want: want{stdout: "no office's or host's permission list names user tom (nor its groups a, b)\n"},
		},
		{
			name: "perm show takes one of --office, --host and --user",
			args: []string{"perm", "show", "--user", "tom", "--office", "hq"},
			want: want{code: 2, stderrHas: []string{"give one of --office, --host and --user"}},
		},
		{
			name: "group remove says which lists lost grants",
			args: []string{"group", "remove", "hq-techs"},
			api: []exchange{{method: "DELETE", target: "/v1/groups/hq-techs", answer: `{"group":"hq-techs","removed_from":[` +
				`{"scope":"office hq","office":"hq","grants":[{"subject":"group:hq-techs","rights":["view"]}],"revision":4},` +
				`{"scope":"host pc-7","office":"hq","host":"ag-07","hostname":"pc-7","grants":[{"subject":"group:hq-techs","rights":["files"]}],"revision":4}]}`}},
			want: want{stdout: "group hq-techs removed; removed from the permissions of office hq and host pc-7\n"},
		},
		{
			name: "user remove says which lists lost grants",
			args: []string{"user", "remove", "tina"},
			api: []exchange{{method: "DELETE", target: "/v1/users/tina", answer: `{"user":"tina","removed_from":[` +
				`{"scope":"office hq","office":"hq","grants":[{"subject":"user:tina","rights":["view"]}],"revision":4}]}`}},
			want: want{stdout: "user tina removed; removed from the permissions of office hq\n"},
		},
		{
			name: "user remove of a user in no list",
			args: []string{"user", "remove", "tina"},
			api:  []exchange{{method: "DELETE", target: "/v1/users/tina", answer: `{"user":"tina","removed_from":[]}`}},
			want: want{stdout: "user tina removed\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
			if tt.ifMatch == nil {
				return
			}
			reqs := f.requests()
			if len(reqs) != len(tt.ifMatch) {
				t.Fatalf("%d requests, want %d", len(reqs), len(tt.ifMatch))
			}
			for i, r := range reqs {
				if got := r.header.Get("If-Match"); got != tt.ifMatch[i] {
					t.Errorf("request %d (%s %s): If-Match %q, want %q", i+1, r.method, r.target, got, tt.ifMatch[i])
				}
			}
		})
	}
}

// When other admins keep changing the list, perm add gives up after a few
// tries instead of looping, and says why.
func TestPermAddGivesUpUnderConstantChange(t *testing.T) {
	var api []exchange
	for i := range permEditTries {
		etag := fmt.Sprintf("e%d", i)
		api = append(api,
			exchange{method: "GET", target: "/v1/offices/hq/permissions", answer: `{"office":"hq","grants":[],"etag":"` + etag + `"}`},
			exchange{method: "PUT", target: "/v1/offices/hq/permissions", body: `{"grants":[{"subject":"user:tina","rights":["view"],"deny":false}]}`,
				status: 409, answer: `{"error":"the permission list of office hq changed since it was read"}`})
	}
	f := newFakeAPI(t, api...)
	want{code: 1, stderrHas: []string{"outpost: perm add: the permission list of office hq changed under every one of 5 tries"}}.check(t, run(t, f, "perm", "add", "--office", "hq", "user:tina=view"))
}

// Every perm command's help says how host and office lists combine:
// restricting one host takes a deny.
func TestPermHelpSaysHostListsAddToOfficeLists(t *testing.T) {
	for _, c := range []string{"set", "add", "remove", "show"} {
		res := run(t, nil, "help", "perm", c)
		if res.code != 0 || !strings.Contains(res.stdout, "A host's list adds to its office's list") || !strings.Contains(res.stdout, "put a deny in that host's list") {
			t.Errorf("help perm %s:\n%s", c, res.stdout)
		}
	}
	if res := run(t, nil, "help", "perm"); !strings.Contains(res.stdout, "a host's list adds to its office's") {
		t.Errorf("help perm:\n%s", res.stdout)
	}
}

// Against a real coordinator: add and remove change only what they name,
// removing a group takes its grants and says from where, and perm show
// --user finds what is left.
func TestPermCommandsAgainstACoordinator(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", nil)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "hq-techs", "members": []string{"tina"}}, nil)
	cli := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": c.URL, "OUTPOST_TOKEN": c.Token}}, args...)
	}
	res := cli("perm", "set", "--office", "hq", "group:hq-techs=view")
	if res.code != 0 {
		t.Fatalf("perm set: %+v", res)
	}
	if res := cli("perm", "set", "--office", "hq"); res.code != 2 {
		t.Fatalf("perm set without grants: %+v", res)
	}
	for _, args := range [][]string{
		{"perm", "add", "--office", "hq", "user:tina=files", "group:hq-techs=command"},
		{"perm", "add", "--office", "hq", "deny:user:tina=command"},
		{"perm", "remove", "--office", "hq", "user:tina"},
	} {
		if res := cli(args...); res.code != 0 {
			t.Fatalf("%s: %+v", strings.Join(args, " "), res)
		}
	}
	var list struct {
		Grants []grantRow `json:"grants"`
	}
	c.MustDo("GET", "/v1/offices/hq/permissions", nil, &list)
	if got := fmt.Sprint(list.Grants); got != "[{group:hq-techs [view command] false} {user:tina [command] true}]" {
		t.Fatalf("office hq: %s", got)
	}
	res = cli("perm", "show", "--user", "tina")
	want := "" +
		"SCOPE      SUBJECT         EFFECT  RIGHTS\n" +
		"office hq  group:hq-techs  allow   view,command\n" +
		"office hq  user:tina       deny    command\n"
	if res.code != 0 || res.stdout != want {
		t.Fatalf("perm show --user tina: %+v\nwant:\n%s", res, want)
	}
	res = cli("group", "remove", "hq-techs")
	if res.code != 0 || res.stdout != "group hq-techs removed; removed from the permissions of office hq\n" {
		t.Fatalf("group remove: %+v", res)
	}
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "hq-techs", "members": []string{"tina"}}, nil)
	if res := cli("perm", "show", "--user", "tina"); res.stdout != "SCOPE      SUBJECT    EFFECT  RIGHTS\noffice hq  user:tina  deny    command\n" {
		t.Fatalf("the group made again has old grants: %+v", res)
	}
}

// A user with the manage right on an office, and no API role, keeps that
// office's list with the CLI, and no other.
func TestPermByAManagerOfTheOffice(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", nil)
	c.CreateOffice("paris", nil)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "lena", "password": "lena-password-1"}, nil)
	c.MustDo("PUT", "/v1/offices/hq/permissions", map[string]any{"grants": []map[string]any{{"subject": "user:lena", "rights": []string{"manage"}}}}, nil)
	lena := newSignedIn(t, c)
	if res := lena.run("lena-password-1\n", "login", "lena", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	if res := lena.run("", "perm", "add", "--office", "hq", "group:hq-techs=view,command"); res.code != 0 {
		t.Fatalf("perm add on hq: %+v", res)
	}
	res := lena.run("", "perm", "show", "--office", "hq")
	if res.code != 0 || !strings.Contains(res.stdout, "group:hq-techs") || !strings.Contains(res.stdout, "user:lena") {
		t.Fatalf("perm show on hq: %+v", res)
	}
	res = lena.run("", "perm", "add", "--office", "paris", "user:lena=command")
	if res.code != 1 || !strings.Contains(res.stderr, "changing the permissions of office paris needs the manage right there or the admin role") &&
		!strings.Contains(res.stderr, "reading the permissions of office paris needs the manage right there") {
		t.Fatalf("perm add on paris: %+v", res)
	}
}
