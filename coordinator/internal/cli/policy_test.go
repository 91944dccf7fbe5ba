package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	policyYAML = "items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"
	policyJSON = `{"office":"berlin","revision":4,"applied":"2025-06-01T11:55:00Z",` +
		`"yaml":"items:\n  - kind: package\n    name: hello\n","items":[{"kind":"package"},{"kind":"patch"},{"kind":"registry"}]}`
)

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berlin.yaml")
	if err := os.WriteFile(file, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", maxPolicy/2+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	put := func(status int, answer string) exchange {
		return exchange{method: "PUT", target: "/v1/offices/berlin/policy", ctype: "application/yaml",
			body: policyYAML, status: status, answer: answer}
	}
	tests := []struct {
		name  string
		args  []string
		stdin string
		api   []exchange
		want  want
	}{
		{
			name: "apply a file",
			args: []string{"policy", "apply", "--office", "berlin", file},
			api:  []exchange{put(200, policyJSON)},
			want: want{stdout: "office berlin: revision 4 applied (3 items)\n"},
		},
		{
			name: "apply warns of what hosts may refuse",
			args: []string{"policy", "apply", "--office", "berlin", file},
			api:  []exchange{put(200, strings.TrimSuffix(policyJSON, "}")+`,"warnings":["item registry:/var/x#a: /var/x is outside /etc/ and /opt/"]}`)},
			want: want{stdout: "office berlin: revision 4 applied (3 items)\n", stderr: "warning: item registry:/var/x#a: /var/x is outside /etc/ and /opt/\n"},
		},
		{
			name:  "apply standard input",
			args:  []string{"policy", "apply", "-", "--office", "berlin"},
			stdin: policyYAML,
			api:   []exchange{put(200, `{"office":"berlin","revision":5,"items":[{}]}`)},
			want:  want{stdout: "office berlin: revision 5 applied (1 item)\n"},
		},
		{
			name: "apply what the office has already",
			args: []string{"policy", "apply", "--office", "berlin", file},
			api:  []exchange{put(200, `{"office":"berlin","revision":4,"items":[{},{}],"unchanged":true}`)},
			want: want{stdout: "policy unchanged: office berlin stays at revision 4 (2 items)\n"},
		},
		{
			name: "apply json",
			args: []string{"policy", "apply", "--office", "berlin", file, "--output", "json"},
			api:  []exchange{put(200, policyJSON)},
			want: want{stdoutJSON: policyJSON},
		},
		{
			name: "a refused line is reported with the file's name",
			args: []string{"policy", "apply", "--office", "berlin", file},
			api:  []exchange{put(400, `{"error":"line 5: artifact 2cf2... was never uploaded; push it with outpost artifact push"}`)},
			want: want{code: 1, stderr: "outpost: policy apply: " + file + ": line 5: artifact 2cf2... was never uploaded; push it with outpost artifact push\n"},
		},
		{
			name:  "a refused line from standard input",
			args:  []string{"policy", "apply", "--office", "berlin", "-"},
			stdin: policyYAML,
			api:   []exchange{put(400, `{"error":"line 2: unknown field \"nme\""}`)},
			want:  want{code: 1, stderr: "outpost: policy apply: standard input: line 2: unknown field \"nme\"\n"},
		},
		{
			name: "apply a missing file",
			args: []string{"policy", "apply", "--office", "berlin", filepath.Join(dir, "nope.yaml")},
			want: want{code: 1, stderrHas: []string{"outpost: policy apply: open the policy: open " + dir, "no such file"}},
		},
		{
			name: "apply a file over the limit",
			args: []string{"policy", "apply", "--office", "berlin", big},
			want: want{code: 1, stderrHas: []string{"is larger than 1 MiB, the coordinator's limit"}},
		},
		{
			name: "apply without an office",
			args: []string{"policy", "apply", file},
			want: want{code: 2, stderrHas: []string{"outpost: policy apply: missing --office NAME"}},
		},
		{
			name: "apply without a file",
			args: []string{"policy", "apply", "--office", "berlin"},
			want: want{code: 2, stderrHas: []string{"outpost: policy apply: missing FILE"}},
		},
		{
			name: "show prints the revision as a comment and the YAML",
			args: []string{"policy", "show", "--office", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/policy", answer: policyJSON}},
			want: want{stdout: "# office berlin, revision 4, applied 2025-06-01T11:55:00Z (5m ago)\nitems:\n  - kind: package\n    name: hello\n"},
		},
		{
			name: "show json",
			args: []string{"policy", "show", "--office", "berlin", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/policy", answer: policyJSON}},
			want: want{stdoutJSON: policyJSON},
		},
		{
			name: "show an office without policy",
			args: []string{"policy", "show", "--office", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/policy", answer: `{"office":"berlin","revision":0,"yaml":"","items":[]}`}},
			want: want{stderr: "office berlin has no policy yet; apply one with: outpost policy apply --office berlin FILE\n"},
		},
		{
			name: "show an office's name as a named policy points to --office",
			args: []string{"policy", "show", "berlin"},
			api: []exchange{
				{method: "GET", target: "/v1/policies/berlin", status: 404, answer: `{"error":"policy berlin: not found"}`},
				{method: "GET", target: "/v1/offices/berlin", answer: `{"name":"berlin"}`},
			},
			want: want{code: 1, stderr: "outpost: policy show: policy berlin: not found; office berlin's own policy is shown with: outpost policy show --office berlin\n"},
		},
		{
			name: "a right with a typo",
			args: []string{"perm", "add", "--office", "berlin", "user:tina=view,comand"},
			want: want{code: 2, stderrHas: []string{`right "comand" (did you mean "command"?): want view, control, command, files or manage`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, runCLI(t, f, cliRun{stdin: strings.NewReader(tt.stdin)}, tt.args...))
		})
	}
}
