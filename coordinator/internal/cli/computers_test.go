package cli

import "testing"

func TestOfficeComputers(t *testing.T) {
	const listed = `{"computers":[{"hostname":"laptop-anna","office":"berlin","added":"2025-06-01T11:00:00Z","member":""},` +
		`{"hostname":"pc-17","office":"berlin","added":"2025-05-30T12:00:00Z","member":"ag-1","enrolled":"2025-06-01T11:58:00Z"}]}`
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "add several",
			args: []string{"office", "add-computer", "berlin", "pc-17", "laptop-anna"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/computers", ctype: "application/json",
				body: `{"hostnames":["pc-17","laptop-anna"]}`, status: 201, answer: listed}},
			want: want{stdout: "2 computers in office berlin; they go there when they enrol\n"},
		},
		{
			name: "add json",
			args: []string{"office", "add-computer", "berlin", "pc-17", "--output", "json"},
			api:  []exchange{{method: "POST", target: "/v1/offices/berlin/computers", body: `{"hostnames":["pc-17"]}`, status: 201, answer: listed}},
			want: want{stdoutJSON: listed},
		},
		{
			name: "add one that another office has",
			args: []string{"office", "add-computer", "hamburg", "pc-17"},
			api: []exchange{{method: "POST", target: "/v1/offices/hamburg/computers", body: `{"hostnames":["pc-17"]}`, status: 409,
				answer: `{"error":"computer pc-17 is already in office berlin: remove it there first"}`}},
			want: want{code: 1, stderr: "outpost: office add-computer: computer pc-17 is already in office berlin: remove it there first\n"},
		},
		{
			name: "add without a hostname",
			args: []string{"office", "add-computer", "berlin"},
			want: want{code: 2, stderrHas: []string{"missing OFFICE HOSTNAME..."}},
		},
		{
			name: "list",
			args: []string{"office", "computers", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/computers", answer: listed}},
			want: want{stdout: "" +
				"HOSTNAME     ADDED   MEMBER  ENROLLED\n" +
				"laptop-anna  1h ago  -       -\n" +
				"pc-17        2d ago  ag-1    2m ago\n"},
		},
		{
			name: "list empty",
			args: []string{"office", "computers", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin/computers", answer: `{"computers":[]}`}},
			want: want{stderr: "office berlin has no computers added by name; add some with: outpost office add-computer berlin HOSTNAME...\n"},
		},
		{
			name: "list of an unknown office",
			args: []string{"office", "computers", "paris"},
			api: []exchange{{method: "GET", target: "/v1/offices/paris/computers", status: 404,
				answer: `{"error":"office paris (to list computers of) does not exist: see outpost office list"}`}},
			want: want{code: 1, stderr: "outpost: office computers: office paris (to list computers of) does not exist: see outpost office list\n"},
		},
		{
			name: "rm",
			args: []string{"office", "rm-computer", "berlin", "pc-17"},
			api:  []exchange{{method: "DELETE", target: "/v1/offices/berlin/computers/pc-17", status: 204}},
			want: want{stdout: "computer pc-17 taken out of office berlin\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
