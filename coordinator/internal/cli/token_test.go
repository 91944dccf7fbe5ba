package cli

import "testing"

const tokenJSON = `{"token":"opt_enroll-secret","id":"tk-1","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":1}`

func TestToken(t *testing.T) {
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "create prints the token alone on stdout and details on stderr",
			args: []string{"token", "create", "--office", "berlin"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/tokens", ctype: "application/json",
				body: `{"ttl":"24h","uses":1,"role":"agent"}`, status: 201, answer: tokenJSON}},
			want: want{
				stdout: "opt_enroll-secret\n",
				stderr: "token tk-1 for office berlin: role agent, 1 use, expires 2025-06-02T12:00:00Z (in 24h); the secret above is shown only now\n",
			},
		},
		{
			name: "create with every flag",
			args: []string{"token", "create", "--office", "berlin", "--ttl", "72h", "--uses", "20", "--role", "relay"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/tokens",
				body: `{"ttl":"72h","uses":20,"role":"relay"}`, status: 201,
				answer: `{"token":"opt_x","id":"tk-2","office":"berlin","role":"relay","expires":"2025-06-04T12:00:00Z","uses":20}`}},
			want: want{stdout: "opt_x\n", stderrHas: []string{"role relay, 20 uses", "(in 3d)"}},
		},
		{
			name: "create json",
			args: []string{"token", "create", "--office", "berlin", "--output", "json"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/tokens",
				body: `{"ttl":"24h","uses":1,"role":"agent"}`, status: 201, answer: tokenJSON}},
			want: want{stdoutJSON: tokenJSON},
		},
		{
			name: "create for an unknown office",
			args: []string{"token", "create", "--office", "paris"},
			api: []exchange{{method: "POST", target: "/v1/offices/paris/tokens",
				body: `{"ttl":"24h","uses":1,"role":"agent"}`, status: 404, answer: `{"error":"no office \"paris\""}`}},
			want: want{code: 1, stderr: "outpost: token create: no office \"paris\"\n"},
		},
		{
			name: "create without an office",
			args: []string{"token", "create"},
			want: want{code: 2, stderrHas: []string{"outpost: token create: missing --office NAME"}},
		},
		{
			name: "create with a wrong role",
			args: []string{"token", "create", "--office", "berlin", "--role", "admin"},
			want: want{code: 2, stderrHas: []string{`--role "admin": want agent or relay`}},
		},
		{
			name: "create with no uses",
			args: []string{"token", "create", "--office", "berlin", "--uses", "0"},
			want: want{code: 2, stderrHas: []string{"--uses 0: want 1 or more"}},
		},
		{
			name: "create with a negative ttl",
			args: []string{"token", "create", "--office", "berlin", "--ttl", "-1h"},
			want: want{code: 2, stderrHas: []string{"--ttl -1h0m0s: want a positive duration"}},
		},
		{
			name: "list",
			args: []string{"token", "list", "--office", "berlin"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin/tokens", answer: `{"tokens":[` +
				`{"id":"tk-1","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":10,"used":3},` +
				`{"id":"tk-2","office":"berlin","role":"relay","expires":"2025-05-31T12:00:00Z","uses":1,"used":0}]}`}},
			want: want{stdout: "" +
				"ID    ROLE   EXPIRES          USED\n" +
				"tk-1  agent  in 24h           3/10\n" +
				"tk-2  relay  expired 24h ago  0/1\n"},
		},
		{
			name: "list json",
			args: []string{"token", "list", "--office", "berlin", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/tokens", answer: `{"tokens":[]}`}},
			want: want{stdoutJSON: `{"tokens":[]}`},
		},
		{
			name: "list empty",
			args: []string{"token", "list", "--office", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/tokens", answer: `{"tokens":[]}`}},
			want: want{stderr: "office berlin has no tokens; create one with: outpost token create --office berlin\n"},
		},
		{
			name: "list without an office",
			args: []string{"token", "list"},
			want: want{code: 2, stderrHas: []string{"outpost: token list: missing --office NAME"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
