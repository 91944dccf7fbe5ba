package cli

import (
	"testing"
	"time"
)

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
			name: "a ttl in days, and a fresh 72h token reads in 3d",
			args: []string{"token", "create", "--office", "berlin", "--ttl", "3d"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/tokens",
				body: `{"ttl":"72h","uses":1,"role":"agent"}`, status: 201,
				answer: `{"token":"opt_x","id":"tk-2","office":"berlin","role":"agent","expires":"2025-06-04T11:59:58Z","uses":1}`}},
			want: want{stdout: "opt_x\n", stderrHas: []string{"expires 2025-06-04T11:59:58Z (in 3d)"}},
		},
		{
			name: "a ttl the CLI cannot read says what it takes",
			args: []string{"token", "create", "--office", "berlin", "--ttl", "3 days"},
			want: want{code: 2, stderrHas: []string{`invalid value "3 days" for flag -ttl: want a duration such as 72h, 30m or 3d (a day is 24h)`}},
		},
		{
			name: "list rounds times ahead",
			args: []string{"token", "list", "--office", "berlin"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin/tokens", answer: `{"tokens":[` +
				`{"id":"tk-1","office":"berlin","role":"agent","expires":"2025-06-08T11:59:00Z","uses":10,"used":3,"state":"valid"},` +
				`{"id":"tk-2","office":"berlin","role":"agent","expires":"2025-06-02T11:59:59Z","uses":1,"used":0,"state":"valid"}]}`}},
			want: want{stdout: "" +
				"ID    ROLE   STATE  EXPIRES  USED\n" +
				"tk-1  agent  valid  in 7d    3/10\n" +
				"tk-2  agent  valid  in 24h   0/1\n"},
		},
		{
			name: "list",
			args: []string{"token", "list", "--office", "berlin"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin/tokens", answer: `{"tokens":[` +
				`{"id":"tk-1","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":10,"used":3,"state":"revoked","revoked":"2025-06-01T11:00:00Z"},` +
				`{"id":"tk-2","office":"berlin","role":"relay","expires":"2025-05-31T12:00:00Z","uses":1,"used":0,"state":"expired"},` +
				`{"id":"tk-3","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":1,"used":1,"state":"used up"}]}`}},
			want: want{stdout: "" +
				"ID    ROLE   STATE    EXPIRES          USED\n" +
				"tk-1  agent  revoked  in 24h           3/10\n" +
				"tk-2  relay  expired  expired 24h ago  0/1\n" +
				"tk-3  agent  used up  in 24h           1/1\n"},
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
		{
			name: "revoke",
			args: []string{"token", "revoke", "--office", "berlin", "tk-1"},
			api: []exchange{{method: "DELETE", target: "/v1/offices/berlin/tokens/tk-1",
				answer: `{"id":"tk-1","office":"berlin","role":"agent","expires":"2025-06-02T12:00:00Z","uses":10,"used":3,"state":"revoked","revoked":"2025-06-01T12:00:00Z"}`}},
			want: want{stdout: "token tk-1 of office berlin revoked; 3 members enrolled with it and stay\n"},
		},
		{
			name: "revoke an unknown token",
			args: []string{"token", "revoke", "tk-9", "--office", "berlin"},
			api: []exchange{{method: "DELETE", target: "/v1/offices/berlin/tokens/tk-9", status: 404,
				answer: `{"error":"token tk-9 of office berlin: not found"}`}},
			want: want{code: 1, stderr: "outpost: token revoke: token tk-9 of office berlin: not found\n"},
		},
		{
			name: "revoke by the secret is refused without sending it",
			args: []string{"token", "revoke", "--office", "berlin", "opt_abcdefgh"},
			want: want{code: 2, stderrHas: []string{"that is a token's secret; give its id"}},
		},
		{
			name: "revoke without an office",
			args: []string{"token", "revoke", "tk-1"},
			want: want{code: 2, stderrHas: []string{"outpost: token revoke: missing --office NAME"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"72h", 72 * time.Hour, true},
		{"30m", 30 * time.Minute, true},
		{"3d", 72 * time.Hour, true},
		{"30d", 720 * time.Hour, true},
		{"0d", 0, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"999999d", 0, false},
		{"3 days", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTTL(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseTTL(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestUntilRoundsAndAgoTruncates(t *testing.T) {
	tests := []struct {
		name string
		f    func(now, t time.Time) string
		d    time.Duration
		want string
	}{
		{"a 72h token a moment later", until, 72*time.Hour - 2*time.Second, "in 3d"},
		{"a 7-day token a minute later", until, 7*24*time.Hour - time.Minute, "in 7d"},
		{"a 24h token a moment later", until, 24*time.Hour - time.Second, "in 24h"},
		{"just under an hour ahead", until, 59*time.Minute + 50*time.Second, "in 1h"},
		{"two and a half days ahead", until, 60 * time.Hour, "in 3d"},
		{"90s ago", func(now, t time.Time) string { return ago(t, now) }, 90 * time.Second, "1m ago"},
		{"71h ago", func(now, t time.Time) string { return ago(t, now) }, 71 * time.Hour, "2d ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f(testNow, testNow.Add(tt.d)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
