package cli

import (
	"strings"
	"testing"
)

func TestUsersAndGroups(t *testing.T) {
	const tinaJSON = `{"name":"tina","role":"","disabled":false,"has_password":false,"groups":[]}`
	tests := []struct {
		name  string
		args  []string
		stdin string
		api   []exchange
		want  want
	}{
		{
			name: "a grant to a group not made yet is warned of",
			args: []string{"perm", "set", "--office", "berlin", "group:techs=view"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/berlin/permissions", answer: `{"office":"berlin","grants":[]}`},
				{method: "PUT", target: "/v1/offices/berlin/permissions", body: `{"grants":[{"subject":"group:techs","rights":["view"],"deny":false}]}`,
					answer: `{"office":"berlin","grants":[{"subject":"group:techs","rights":["view"]}],"revision":3,"warnings":["there is no group techs yet: this grant applies once there is (outpost group list)"]}`}},
			want: want{stdout: "SCOPE          SUBJECT      EFFECT  RIGHTS\noffice berlin  group:techs  allow   view\nsigned into policy revision 3 of office berlin; connected hosts are told now\n", stderr: "warning: there is no group techs yet: this grant applies once there is (outpost group list)\n"},
		},
		{
			name: "a user without a password is created, with a note that it cannot sign in",
			args: []string{"user", "add", "tina"},
			api:  []exchange{{method: "POST", target: "/v1/users", body: `{"name":"tina","role":""}`, status: 201, answer: tinaJSON}},
			want: want{
				stdout: "USER  ROLE        GROUPS  STATE\ntina  technician  -       no password\n",
				stderr: "note: tina has no password and cannot sign in until one is set: outpost user set tina --password-stdin < FILE\n",
			},
		},
		{
			name: "the note goes to stderr in json mode too",
			args: []string{"user", "add", "tina", "--output", "json"},
			api:  []exchange{{method: "POST", target: "/v1/users", body: `{"name":"tina","role":""}`, status: 201, answer: tinaJSON}},
			want: want{stdoutJSON: tinaJSON, stderrHas: []string{"note: tina has no password"}},
		},
		{
			name:  "a user with a password gets no note",
			args:  []string{"user", "add", "tina", "--password-stdin"},
			stdin: "pw-of-tina\n",
			api: []exchange{{method: "POST", target: "/v1/users", body: `{"name":"tina","role":"","password":"pw-of-tina"}`, status: 201,
				answer: `{"name":"tina","role":"","has_password":true,"groups":[]}`}},
			want: want{stdout: "USER  ROLE        GROUPS  STATE\ntina  technician  -       active\n"},
		},
		{
			name: "group add prints in lower case like everything else",
			args: []string{"group", "add", "berlin-techs", "tina", "--description", "Berlin IT"},
			api: []exchange{{method: "POST", target: "/v1/groups", body: `{"name":"berlin-techs","description":"Berlin IT","members":["tina"]}`,
				status: 201, answer: `{"name":"berlin-techs","description":"Berlin IT","members":["tina"]}`}},
			want: want{stdout: "group berlin-techs: tina\n"},
		},
		{
			name: "group members",
			args: []string{"group", "members", "berlin-techs", "--remove", "tina"},
			api: []exchange{
				{method: "GET", target: "/v1/groups/berlin-techs", answer: `{"name":"berlin-techs","members":["tina"]}`},
				{method: "PATCH", target: "/v1/groups/berlin-techs", body: `{"add":null,"remove":["tina"]}`,
					answer: `{"name":"berlin-techs","members":[]}`}},
			want: want{stdout: "group berlin-techs: -\n"},
		},
		{
			name: "group members that change nothing are told",
			args: []string{"group", "members", "berlin-techs", "--remove", "tna", "--add", "tom"},
			api: []exchange{
				{method: "GET", target: "/v1/groups/berlin-techs", answer: `{"name":"berlin-techs","members":["tina","tom"]}`},
				{method: "PATCH", target: "/v1/groups/berlin-techs", body: `{"add":["tom"],"remove":["tna"]}`,
					answer: `{"name":"berlin-techs","members":["tina","tom"]}`}},
			want: want{stdout: "group berlin-techs: tina, tom\n",
				stderr: "note: tna was not a member of berlin-techs (did you mean \"tina\"?)\nnote: tom was a member of berlin-techs already\n"},
		},
		{
			name: "group remove",
			args: []string{"group", "remove", "berlin-techs"},
			api:  []exchange{{method: "DELETE", target: "/v1/groups/berlin-techs", status: 204}},
			want: want{stdout: "group berlin-techs removed\n"},
		},
		{
			name: "user remove",
			args: []string{"user", "remove", "tina"},
			api:  []exchange{{method: "DELETE", target: "/v1/users/tina", status: 204}},
			want: want{stdout: "user tina removed\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			c := cliRun{}
			if tt.stdin != "" {
				c.stdin = strings.NewReader(tt.stdin)
			}
			tt.want.check(t, runCLI(t, f, c, tt.args...))
		})
	}
}
