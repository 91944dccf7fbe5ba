package cli

import (
	"os"
	"path/filepath"
	"testing"
)

const (
	kiosksYAML = "targets: {labels: [kiosk]}\nitems: []\n"
	kiosksJSON = `{"name":"kiosks","priority":5,"targets":{"offices":[],"agents":["pc-17"],"labels":["kiosk"]},` +
		`"applied":"2025-06-01T11:55:00Z","yaml":"targets: {labels: [kiosk]}\nitems: []\n","items":[{}],` +
		`"published":{"berlin":7,"paris":3},"computers":["pc-1","pc-17"]}`
	effectiveJSON = `{"agent":"ag-1","hostname":"pc-17","office":"berlin","revision":7,"variant":true,"labels":{"kiosk":"","floor":"3"},` +
		`"items":[{"id":"package/hello","policy":"pc-17-hello","level":"agent","priority":0,"overridden":["office:berlin"],"item":{"kind":"package","state":"STATE_PRESENT"}},` +
		`{"id":"package/tools","policy":"office:berlin","level":"office","priority":0,"item":{"kind":"package","state":"STATE_ABSENT"}},` +
		`{"id":"patch/OUT-1","policy":"patches","level":"office","priority":0,"item":{"kind":"patch","state":"STATE_PRESENT","report_only":true}}],"conflicts":[]}`
)

func TestScopeCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kiosks.yaml")
	if err := os.WriteFile(file, []byte(kiosksYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	put := func(status int, answer string) exchange {
		return exchange{method: "PUT", target: "/v1/policies/kiosks", ctype: "application/yaml", body: kiosksYAML, status: status, answer: answer}
	}
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "apply a named policy",
			args: []string{"policy", "apply", "--name", "kiosks", file},
			api:  []exchange{put(201, kiosksJSON)},
			want: want{stdout: "policy kiosks applied (1 item, priority 5): berlin revision 7, paris revision 3\n"},
		},
		{
			name: "a conflict is the coordinator's message",
			args: []string{"policy", "apply", "--name", "kiosks", file},
			api:  []exchange{put(409, `{"error":"policy kiosks was not applied: it would conflict with other policies:\npolicies \"kiosks\" and \"lab\" set package/hello differently, both at the label level with priority 0, on pc-1","conflicts":[]}`)},
			want: want{code: 1, stderrHas: []string{`policies "kiosks" and "lab" set package/hello differently`, "on pc-1"}},
		},
		{
			name: "office and name together",
			args: []string{"policy", "apply", "--name", "kiosks", "--office", "berlin", file},
			want: want{code: 2, stderrHas: []string{"give --office or --name, not both"}},
		},
		{
			name: "show a named policy",
			args: []string{"policy", "show", "kiosks"},
			api:  []exchange{{method: "GET", target: "/v1/policies/kiosks", answer: kiosksJSON}},
			want: want{stdout: "# policy kiosks, applied 2025-06-01T11:55:00Z (5m ago), applies to 2 computers now\n" + kiosksYAML},
		},
		{
			name: "list",
			args: []string{"policy", "list"},
			api:  []exchange{{method: "GET", target: "/v1/policies", answer: `{"policies":[` + kiosksJSON + `]}`}},
			want: want{stdout: "NAME    PRIORITY  TARGETS                   APPLIED\nkiosks  5         agent pc-17, label kiosk  5m ago\n"},
		},
		{
			name: "remove",
			args: []string{"policy", "rm", "kiosks"},
			api:  []exchange{{method: "DELETE", target: "/v1/policies/kiosks", status: 204}},
			want: want{stdout: "policy kiosks removed\n"},
		},
		{
			name: "effective shows report-only patches, as its help says",
			args: []string{"policy", "effective", "pc-17"},
			api:  []exchange{{method: "GET", target: "/v1/agents/pc-17/policy", answer: effectiveJSON}},
			want: want{stdout: "agent:     ag-1 (pc-17)\noffice:    berlin\nlabels:    floor=3 kiosk\nrevision:  7, a policy of its own\n\n" +
				"ITEM           STATE        FROM           LEVEL   PRIORITY  OVERRIDES\n" +
				"package/hello  present      pc-17-hello    agent   0         office:berlin\n" +
				"package/tools  absent       office:berlin  office  0         -\n" +
				"patch/OUT-1    report-only  patches        office            -\n"},
		},
		{
			name: "effective json",
			args: []string{"policy", "effective", "pc-17", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents/pc-17/policy", answer: effectiveJSON}},
			want: want{stdoutJSON: effectiveJSON},
		},
		{
			name: "label",
			args: []string{"agent", "label", "pc-17", "kiosk", "floor=3", "old-"},
			api: []exchange{{method: "PATCH", target: "/v1/agents/pc-17/labels", body: `{"set":{"kiosk":"","floor":"3"},"remove":["old"]}`,
				answer: `{"id":"ag-1","hostname":"pc-17","labels":{"kiosk":"","floor":"3"}}`}},
			want: want{stdout: "agent ag-1 (pc-17) labels: floor=3 kiosk\n"},
		},
		{
			name: "label needs a label",
			args: []string{"agent", "label", "pc-17"},
			want: want{code: 2, stderrHas: []string{"missing"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
