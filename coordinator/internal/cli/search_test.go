package cli

import (
	"strings"
	"testing"
)

func roamingJSON() string {
	return strings.Replace(pc4, `"office":"hamburg"`, `"office":"hamburg","home":"hamburg","roaming":true`, 1)
}

func TestAgentSearchMove(t *testing.T) {
	movedJSON := strings.Replace(pc1, `"office":"berlin"`, `"office":"hamburg","home":"hamburg"`, 1)
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "search by text asks the coordinator to filter",
			args: []string{"agent", "search", "PC-3"},
			api: []exchange{
				{method: "GET", target: "/v1/offices", answer: `{"offices":[` + officeAt("berlin", 4) + `]}`},
				{method: "GET", target: "/v1/agents?q=PC-3", answer: `{"agents":[` + pc3 + `]}`},
			},
			want: want{stdout: "" +
				"ID      HOSTNAME  OFFICE  ADDRESS   LAST SEEN  REVISION  COMPLIANT\n" +
				"ag-333  pc-3      berlin  10.1.0.6  5s ago     4         no\n"},
		},
		{
			name: "search by office and state, roaming agents marked",
			args: []string{"agent", "search", "--office", "hamburg", "--state", "roaming"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/hamburg", answer: officeAt("hamburg", 1)},
				{method: "GET", target: "/v1/agents?office=hamburg&state=roaming", answer: `{"agents":[` + roamingJSON() + `]}`},
			},
			want: want{stdout: "" +
				"ID       HOSTNAME  OFFICE             ADDRESS   LAST SEEN  REVISION  COMPLIANT\n" +
				"ag-4444  pc-4      hamburg (roaming)  10.1.0.7  1m ago     0         pending\n"},
		},
		{
			name: "search json prints the API's answer",
			args: []string{"agent", "search", "pc", "--state", "offline", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents?q=pc&state=offline", answer: `{"agents":[` + pc2 + `]}`}},
			want: want{stdoutJSON: `{"agents":[` + pc2 + `]}`},
		},
		{
			name: "search without a match",
			args: []string{"agent", "search", "nothing"},
			api: []exchange{
				{method: "GET", target: "/v1/offices", answer: `{"offices":[]}`},
				{method: "GET", target: "/v1/agents?q=nothing", answer: `{"agents":[]}`},
			},
			want: want{stderr: "no agents match\n"},
		},
		{
			name: "search for computers not seen for 30 days",
			args: []string{"agent", "search", "--not-seen", "30d", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents?not_seen=720h", answer: `{"agents":[` + pc2 + `]}`}},
			want: want{stdoutJSON: `{"agents":[` + pc2 + `]}`},
		},
		{
			name: "search by version: who is not there yet",
			args: []string{"agent", "search", "--office", "berlin", "--not-version", "1.6.0", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents?not_version=1.6.0&office=berlin", answer: `{"agents":[` + pc2 + `]}`}},
			want: want{stdoutJSON: `{"agents":[` + pc2 + `]}`},
		},
		{
			name: "search by version finding none says so",
			args: []string{"agent", "search", "--version", "1.6.0"},
			api: []exchange{
				{method: "GET", target: "/v1/offices", answer: `{"offices":[]}`},
				{method: "GET", target: "/v1/agents?version=1.6.0", answer: `{"agents":[]}`},
			},
			want: want{stderr: "no agents match\n"},
		},
		{
			name: "search with a wrong not-seen",
			args: []string{"agent", "search", "--not-seen", "a month"},
			want: want{code: 2, stderrHas: []string{`invalid value "a month" for flag -not-seen`}},
		},
		{
			name: "search with a wrong state",
			args: []string{"agent", "search", "--state", "asleep"},
			want: want{code: 2, stderrHas: []string{`--state "asleep": want online, offline, roaming, compliant, noncompliant, reboot, upgrade-refused or hung`}},
		},
		{
			name: "search for nothing",
			args: []string{"agent", "search"},
			want: want{code: 2, stderrHas: []string{"nothing to search for"}},
		},
		{
			name: "search in an unknown office",
			args: []string{"agent", "search", "--office", "paris", "--state", "online"},
			api: []exchange{{method: "GET", target: "/v1/offices/paris", status: 404,
				answer: `{"error":"office paris: not found"}`},
				{method: "GET", target: "/v1/offices", answer: `{"offices":[{"name":"berlin"}]}`}},
			want: want{code: 1, stderr: "outpost: agent search: office paris: not found; see outpost office list\n"},
		},
		{
			name: "move",
			args: []string{"agent", "move", "ag-1", "--office", "hamburg"},
			api: []exchange{{method: "POST", target: "/v1/agents/ag-1/move", ctype: "application/json",
				body: `{"office":"hamburg"}`, answer: movedJSON}},
			want: want{stdout: "agent ag-1 (pc-1) moved: home office hamburg, now in hamburg\n"},
		},
		{
			name: "move json",
			args: []string{"agent", "move", "ag-1", "--office", "hamburg", "--output", "json"},
			api:  []exchange{{method: "POST", target: "/v1/agents/ag-1/move", body: `{"office":"hamburg"}`, answer: movedJSON}},
			want: want{stdoutJSON: movedJSON},
		},
		{
			name: "move to an unknown office says which",
			args: []string{"agent", "move", "ag-1", "--office", "paris"},
			api: []exchange{{method: "POST", target: "/v1/agents/ag-1/move", body: `{"office":"paris"}`, status: 404,
				answer: `{"error":"office paris does not exist (outpost office list)"}`}},
			want: want{code: 1, stderr: "outpost: agent move: office paris does not exist (outpost office list)\n"},
		},
		{
			name: "move without --office",
			args: []string{"agent", "move", "ag-1"},
			want: want{code: 2, stderrHas: []string{"missing --office NAME"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

// TestEveryListHasJSON runs each command that lists things with --output
// json and wants the API's answer on stdout, nothing else.
func TestEveryListHasJSON(t *testing.T) {
	lists := map[string]struct {
		args   []string
		target string
		answer string
	}{
		"office list":      {[]string{"office", "list"}, "/v1/offices", `{"offices":[` + berlinJSON + `]}`},
		"office computers": {[]string{"office", "computers", "berlin"}, "/v1/offices/berlin/computers", `{"computers":[{"hostname":"pc-9","office":"berlin","added":"2025-06-01T11:00:00Z","member":""}]}`},
		"token list":       {[]string{"token", "list", "--office", "berlin"}, "/v1/offices/berlin/tokens", `{"tokens":[{"id":"ab12","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":3,"used":1}]}`},
		"artifact list":    {[]string{"artifact", "list"}, "/v1/artifacts", `{"artifacts":[{"sha256":"` + strings.Repeat("ab", 32) + `","size":3,"name":"a.tar.gz","uploaded":"2025-06-01T11:00:00Z"}]}`},
		"agent list":       {[]string{"agent", "list"}, "/v1/agents", `{"agents":[` + pc1 + `]}`},
		"agent search":     {[]string{"agent", "search", "pc"}, "/v1/agents?q=pc", `{"agents":[` + pc1 + `]}`},
		"user list":        {[]string{"user", "list"}, "/v1/users", `{"users":[{"name":"tina","role":"","disabled":false,"groups":["berlin-techs"]}]}`},
		"group list":       {[]string{"group", "list"}, "/v1/groups", `{"groups":[{"name":"berlin-techs","description":"","members":["tina"]}]}`},
		"patch list":       {[]string{"patch", "list"}, "/v1/patches", `{"patches":[{"id":"OUT-1","severity":"high","package":"hello","fixed_version":"2.0.0"}]}`},
		"policy list":      {[]string{"policy", "list"}, "/v1/policies", `{"policies":[{"name":"kiosks","priority":0,"targets":{"offices":[],"agents":[],"labels":["kiosk"]},"applied":"2025-06-01T11:00:00Z"}]}`},
	}
	for _, c := range commands {
		name := c.name
		if !strings.HasSuffix(name, " list") && !strings.HasSuffix(name, " search") && name != "office computers" {
			continue
		}
		if _, ok := lists[name]; !ok {
			t.Errorf("command %q lists things but this test does not check its --output json", name)
		}
	}
	for name, l := range lists {
		t.Run(name, func(t *testing.T) {
			f := newFakeAPI(t, exchange{method: "GET", target: l.target, answer: l.answer})
			want{stdoutJSON: l.answer}.check(t, run(t, f, append([]string{"--output", "json"}, l.args...)...))
		})
	}
}
