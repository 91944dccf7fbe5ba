package cli

import "testing"

const caJSON = `{"fingerprint":"sha256:bb","not_before":"2025-05-01T00:00:00Z","not_after":"2035-04-29T00:00:00Z","renews_from":"2032-04-30T00:00:00Z",` +
	`"earlier":[{"fingerprint":"sha256:aa","not_before":"2018-05-01T00:00:00Z","not_after":"2028-04-28T00:00:00Z"}],` +
	`"members":{"current":7,"earlier":2,"unknown":1}}`

func TestCA(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "show",
			args: []string{"ca"},
			api:  []exchange{{method: "GET", target: "/v1/ca", answer: caJSON}},
			want: want{stdout: "fingerprint:  sha256:bb\n" +
				"valid from:   2025-05-01T00:00:00Z (31d ago)\n" +
				"ends:         2035-04-29T00:00:00Z\n" +
				"renews from:  2032-04-30T00:00:00Z\n" +
				"earlier:      sha256:aa (ends 2028-04-28)\n" +
				"members:      7 hold the current certificate, 2 an earlier one (they learn it at their next direct check-in), 1 do not say (older versions)\n"},
		},
		{
			name: "json",
			args: []string{"ca", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/ca", answer: caJSON}},
			want: want{stdoutJSON: caJSON},
		},
		{
			name: "a read-only role is enough; none is not",
			args: []string{"ca"},
			api: []exchange{{method: "GET", target: "/v1/ca", status: 403,
				answer: `{"error":"user tina has no API role (a technician); this needs the read-only role or above: ask an admin if it should"}`}},
			want: want{code: 1, stderr: "outpost: ca: user tina has no API role (a technician); this needs the read-only role or above: ask an admin if it should\n"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
