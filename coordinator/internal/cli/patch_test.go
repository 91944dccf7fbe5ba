package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPatchCommands(t *testing.T) {
	feed := filepath.Join(t.TempDir(), "feed.yaml")
	feedText := "patches:\n  - {id: OUT-1, severity: high, package: hello, fixed_version: 2.0.0, artifact: x}\n"
	if err := os.WriteFile(feed, []byte(feedText), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "import",
			args: []string{"patch", "import", feed},
			api: []exchange{{method: "POST", target: "/v1/patches/import", body: feedText, ctype: "application/yaml",
				answer: `{"added":1,"updated":0,"patches":["OUT-1"]}`}},
			want: want{stdout: "imported 1 patch from " + feed + ": 1 new, 0 updated\n"},
		},
		{
			name: "import refused",
			args: []string{"patch", "import", feed},
			api: []exchange{{method: "POST", target: "/v1/patches/import", body: feedText, ctype: "application/yaml",
				status: 400, answer: `{"error":"the feed was not imported: patch OUT-1: supersedes itself"}`}},
			want: want{code: 1, stderr: "outpost: patch import: the feed was not imported: patch OUT-1: supersedes itself\n"},
		},
		{
			name: "approve",
			args: []string{"patch", "approve", "OUT-1", "--office", "berlin", "--window", "22:00-04:00"},
			api: []exchange{{method: "POST", target: "/v1/patches/OUT-1/approve", body: `{"office":"berlin","window":"22:00-04:00","reboot":""}`,
				answer: `{"added":true,"revision":7}`}},
			want: want{stdout: "patch OUT-1 approved for office berlin (policy revision 7)\n"},
		},
		{
			name: "approve needs an office",
			args: []string{"patch", "approve", "OUT-1"},
			want: want{code: 2, stderrHas: []string{"missing --office NAME"}},
		},
		{
			name: "missing",
			args: []string{"patch", "missing", "--office", "berlin"},
			api: []exchange{{method: "GET", target: "/v1/patches-missing?office=berlin",
				answer: `{"hosts":[{"hostname":"pc-1","office":"berlin","missing":[{"patch":"OUT-1","status":"pending","message":"waiting for window"}]}],` +
					`"offices":[{"office":"berlin","hosts":2,"missing":{"OUT-1":1}}]}`}},
			want: want{stdout: "OFFICE  PATCH  HOSTS MISSING IT\nberlin  OUT-1  1 of 2\n\nHOST  OFFICE  PATCH  STATUS   WHY\npc-1  berlin  OUT-1  pending  waiting for window\n"},
		},
		{
			name: "rule",
			args: []string{"patch", "rule", "high-first", "--min-severity", "high", "--test-office", "lab", "--after-days", "3"},
			api: []exchange{{method: "PUT", target: "/v1/patch-rules/high-first",
				body:   `{"min_severity":"high","test_office":"lab","after_days":3,"offices":null,"window":"","reboot":""}`,
				answer: `{"name":"high-first","approved":[{"patch":"OUT-1","office":"lab","by":"rule high-first"}]}`}},
			want: want{stdout: "rule high-first saved: high and above go to lab now, elsewhere after 3 days clean\napproved OUT-1 for lab (rule high-first)\n"},
		},
	}
	compliance := func(answer string) []exchange {
		return []exchange{{method: "GET", target: "/v1/offices/berlin/compliance", answer: answer}}
	}
	tests = append(tests, []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{name: "compliance of an office without agents", args: []string{"office", "compliance", "berlin"},
			api:  compliance(`{"office":"berlin","revision":7,"hosts":0,"items":[]}`),
			want: want{stdout: "office berlin has no agents yet\n"}},
		{name: "compliance of an office without a policy", args: []string{"office", "compliance", "berlin"},
			api:  compliance(`{"office":"berlin","revision":0,"hosts":2,"items":[]}`),
			want: want{stdout: "office berlin has no policy yet: nothing is asked of its 2 agents\n"}},
		{name: "compliance by item", args: []string{"office", "compliance", "berlin"},
			api: compliance(`{"office":"berlin","revision":7,"hosts":3,"items":[{"id":"package/tools","hosts":1,"counts":{"failed":1},"failed":[{"host":"pc-2","message":"disk full"}],"not_reported_by":0},` +
				`{"id":"package/hello","hosts":3,"counts":{"compliant":2},"not_reported_by":1}]}`),
			want: want{stdout: "ITEM           HOSTS  COMPLIANT  PENDING  FAILED  N/A  NO REPORT  WHY FAILED\n" +
				"package/tools  1      0          0        1       0    0          pc-2: disk full\n" +
				"package/hello  3      2          0        0       0    1          -\n"}},
		{name: "compliance with hosts that have not reported on the current revision", args: []string{"office", "compliance", "berlin"},
			api: compliance(`{"office":"berlin","revision":7,"hosts":5,"outdated":1,"items":[{"id":"package/big","hosts":5,"counts":{"compliant":4,"pending":1},"not_reported_by":0,"outdated":1}]}`),
			want: want{stdout: "ITEM         HOSTS  COMPLIANT  PENDING  FAILED  N/A  NO REPORT  WHY FAILED\n" +
				"package/big  5      4          1        0       0    0          -\n" +
				"1 of 5 hosts has not reported on revision 7 yet: its last report is of an earlier revision, so its items count as pending\n"}},
		{name: "compliance with several hosts behind", args: []string{"office", "compliance", "berlin"},
			api: compliance(`{"office":"berlin","revision":7,"hosts":5,"outdated":2,"items":[{"id":"package/big","hosts":5,"counts":{"compliant":3,"pending":2},"not_reported_by":0,"outdated":2}]}`),
			want: want{stdout: "ITEM         HOSTS  COMPLIANT  PENDING  FAILED  N/A  NO REPORT  WHY FAILED\n" +
				"package/big  5      3          2        0       0    0          -\n" +
				"2 of 5 hosts have not reported on revision 7 yet: their last reports are of an earlier revision, so their items count as pending\n"}},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
