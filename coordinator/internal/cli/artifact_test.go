package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// storeArtifact answers an upload like the coordinator: with the SHA-256 and
// size of what it received.
func storeArtifact(name string) func([]byte) (int, string) {
	return func(body []byte) (int, string) {
		sum := sha256.Sum256(body)
		return 201, fmt.Sprintf(`{"sha256":"%x","size":%d,"name":%q,"uploaded":"2025-06-01T12:00:00Z"}`, sum, len(body), name)
	}
}

func writeFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestArtifactPush(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	big := writeFile(t, dir, "hello-1.0.0.tar.gz", data)
	empty := writeFile(t, dir, "empty.bin", nil)
	emptySum := sha256.Sum256(nil)

	tenths := regexp.MustCompile(`(?m)^hello-1\.0\.0\.tar\.gz: (\d+)% \(`)

	tests := []struct {
		name   string
		args   []string
		stdin  []byte
		tty    bool
		sent   []byte // what the coordinator must receive
		answer func([]byte) (int, string)
		check  func(t *testing.T, res cliResult)
	}{
		{
			name: "a file streams with its length and logs progress by tenths when stderr is no terminal",
			args: []string{"artifact", "push", big},
			sent: data,
			check: func(t *testing.T, res cliResult) {
				want{stdout: sha + "\n", stderrHas: []string{"stored hello-1.0.0.tar.gz (3.0 MiB); name it in a policy item as artifact: " + sha}}.check(t, res)
				if strings.Contains(res.stderr, "\r") {
					t.Errorf("carriage return in the log of a non-terminal:\n%q", res.stderr)
				}
				var steps []int
				for _, m := range tenths.FindAllStringSubmatch(res.stderr, -1) {
					pct, _ := strconv.Atoi(m[1])
					steps = append(steps, pct/10)
				}
				if fmt.Sprint(steps) != "[1 2 3 4 5 6 7 8 9 10]" {
					t.Errorf("progress lines at tenths %v, want one at each of 1..10:\n%s", steps, res.stderr)
				}
				if !strings.Contains(res.stderr, "hello-1.0.0.tar.gz: 100% (3.0 MiB of 3.0 MiB, ") {
					t.Errorf("no final line with sizes:\n%s", res.stderr)
				}
			},
		},
		{
			name: "on a terminal the bar is redrawn in place and ends its line",
			args: []string{"artifact", "push", big, "--name", "hello.tgz"},
			tty:  true,
			sent: data,
			check: func(t *testing.T, res cliResult) {
				want{stdout: sha + "\n", stderrHas: []string{"\rhello.tgz [", "] 100%  3.0 MiB / 3.0 MiB  ", "/s\n"}}.check(t, res)
				if n := strings.Count(res.stderr, "\r"); n < 2 {
					t.Errorf("%d redraws, want several:\n%q", n, res.stderr)
				}
				if strings.Count(res.stderr, "\n") != 2 {
					t.Errorf("want the progress line and the summary line only:\n%q", res.stderr)
				}
			},
		},
		{
			name: "quiet prints only the sha",
			args: []string{"artifact", "push", "--quiet", big},
			sent: data,
			check: func(t *testing.T, res cliResult) {
				want{stdout: sha + "\n"}.check(t, res)
			},
		},
		{
			name: "json prints the API's artifact",
			args: []string{"artifact", "push", big, "--output", "json", "--quiet"},
			sent: data,
			check: func(t *testing.T, res cliResult) {
				want{stdoutJSON: fmt.Sprintf(`{"sha256":%q,"size":%d,"name":"hello-1.0.0.tar.gz","uploaded":"2025-06-01T12:00:00Z"}`, sha, len(data))}.check(t, res)
			},
		},
		{
			name:  "standard input is sent chunked under --name",
			args:  []string{"artifact", "push", "-", "--name", "hello-1.0.0.tar.gz"},
			stdin: data,
			sent:  data,
			check: func(t *testing.T, res cliResult) {
				want{stdout: sha + "\n", stderrHas: []string{"hello-1.0.0.tar.gz: 3.0 MiB (", "stored hello-1.0.0.tar.gz"}}.check(t, res)
			},
		},
		{
			name: "an empty file",
			args: []string{"artifact", "push", empty},
			sent: []byte{},
			check: func(t *testing.T, res cliResult) {
				want{stdout: hex.EncodeToString(emptySum[:]) + "\n", stderrHas: []string{"empty.bin: 100% (0 B of 0 B"}}.check(t, res)
			},
		},
		{
			name: "a sha that disagrees with the bytes sent",
			args: []string{"artifact", "push", "--quiet", big},
			sent: data,
			answer: func([]byte) (int, string) {
				return 201, `{"sha256":"` + strings.Repeat("0", 64) + `","size":1,"name":"x"}`
			},
			check: func(t *testing.T, res cliResult) {
				want{code: 1, stderrHas: []string{"outpost: artifact push: the coordinator stored sha256 0000", "but the 3.0 MiB sent hash to " + sha, "Push it again"}}.check(t, res)
			},
		},
		{
			name: "a refused upload ends the progress line before the error",
			args: []string{"artifact", "push", big},
			tty:  true,
			sent: data,
			answer: func([]byte) (int, string) {
				return 507, `{"error":"the file server is full; free space and push again"}`
			},
			check: func(t *testing.T, res cliResult) {
				want{code: 1, stderrHas: []string{"\noutpost: artifact push: the file server is full; free space and push again\n"}}.check(t, res)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "hello-1.0.0.tar.gz"
			for i, a := range tt.args {
				if a == "--name" {
					name = tt.args[i+1]
				}
			}
			if tt.args[2] == empty {
				name = "empty.bin"
			}
			answer := tt.answer
			if answer == nil {
				answer = storeArtifact(name)
			}
			f := newFakeAPI(t, exchange{method: "POST", target: "/v1/artifacts?name=" + name,
				ctype: "application/octet-stream", body: string(tt.sent), respond: answer})
			c := cliRun{stdin: bytes.NewReader(tt.stdin), now: steppingClock(testNow, 50*time.Millisecond)}
			if tt.tty {
				c.stderr = &terminalWriter{}
			}
			res := runCLI(t, f, c, tt.args...)
			tt.check(t, res)

			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if !bytes.Equal(r.body, tt.sent) {
				t.Errorf("the coordinator received %d bytes that differ from the %d of the file", len(r.body), len(tt.sent))
			}
			switch {
			case tt.stdin != nil:
				if !r.chunked || r.contentLength != -1 {
					t.Errorf("standard input sent with Content-Length %d, chunked %v; want chunked", r.contentLength, r.chunked)
				}
			case r.contentLength != int64(len(tt.sent)) || r.chunked:
				t.Errorf("Content-Length %d (chunked %v), want %d", r.contentLength, r.chunked, len(tt.sent))
			}
		})
	}
}

func TestArtifactPushRefusedBeforeSending(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "a.bin", []byte("hello"))
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"no file", []string{"artifact", "push"}, want{code: 2, stderrHas: []string{"outpost: artifact push: missing FILE"}}},
		{"two files", []string{"artifact", "push", file, file}, want{code: 2, stderrHas: []string{"unexpected argument"}}},
		{"standard input without a name", []string{"artifact", "push", "-"}, want{code: 2, stderrHas: []string{"needs --name"}}},
		{"a missing file", []string{"artifact", "push", filepath.Join(dir, "nope")}, want{code: 1, stderrHas: []string{"outpost: artifact push: open the artifact: open " + filepath.Join(dir, "nope") + ": no such file or directory"}}},
		{"a directory", []string{"artifact", "push", dir}, want{code: 1, stderr: "outpost: artifact push: " + dir + " is a directory; push a single file, such as a .tar.gz of it\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

func TestArtifactListShowRemove(t *testing.T) {
	sha := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	art := `{"sha256":"` + sha + `","size":1536,"name":"hello-1.0.0.tar.gz","uploaded":"2025-06-01T10:00:00Z"}`
	other := `{"sha256":"00000000000a` + strings.Repeat("0", 52) + `","size":1,"name":"other.bin","uploaded":"2025-06-01T10:00:00Z"}`
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "list",
			args: []string{"artifact", "list"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `]}`}},
			want: want{stdout: "" +
				"SHA256                                                            SIZE     NAME                UPLOADED\n" +
				sha + "  1.5 KiB  hello-1.0.0.tar.gz  2h ago\n"},
		},
		{
			name: "list json",
			args: []string{"artifact", "list", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `]}`}},
			want: want{stdoutJSON: `{"artifacts":[` + art + `]}`},
		},
		{
			name: "list empty",
			args: []string{"artifact", "list"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[]}`}},
			want: want{stderr: "no artifacts yet; upload one with: outpost artifact push FILE\n"},
		},
		{
			name: "show",
			args: []string{"artifact", "show", strings.ToUpper(sha)},
			api:  []exchange{{method: "GET", target: "/v1/artifacts/" + sha, answer: art}},
			want: want{stdout: "" +
				"sha256:    " + sha + "\n" +
				"name:      hello-1.0.0.tar.gz\n" +
				"size:      1.5 KiB (1536 bytes)\n" +
				"uploaded:  2025-06-01T10:00:00Z (2h ago)\n" +
				"chunks:    none (fetched whole; push it again to add chunks)\n" +
				"\nno agent has reported fetching it yet\n"},
		},
		{
			name: "show with figures by source",
			args: []string{"artifact", "show", sha},
			api: []exchange{{method: "GET", target: "/v1/artifacts/" + sha, answer: strings.TrimSuffix(art, "}") +
				`,"chunk_size":4194304,"chunks":1,"fetched":{"total":{"agents":3,"peer":3072,"relay":1536,"file_server":0,"served_to_peers":3072,"bad_chunks":1,"hit_ratio":1,"peer_ratio":0.6667},` +
				`"offices":[{"office":"berlin","agents":3,"peer":3072,"relay":1536,"file_server":0,"served_to_peers":3072,"bad_chunks":1,"hit_ratio":1,"peer_ratio":0.6667}]}}`}},
			want: want{stdout: "" +
				"sha256:    " + sha + "\n" +
				"name:      hello-1.0.0.tar.gz\n" +
				"size:      1.5 KiB (1536 bytes)\n" +
				"uploaded:  2025-06-01T10:00:00Z (2h ago)\n" +
				"chunks:    1\n" +
				"\n" +
				"OFFICE  AGENTS  PEER     RELAY    FILE SERVER  HIT RATIO  FROM PEERS  SERVED TO PEERS  BAD CHUNKS\n" +
				"berlin  3       3.0 KiB  1.5 KiB  0 B          100.0%     66.7%       3.0 KiB          1\n" +
				"(all)   3       3.0 KiB  1.5 KiB  0 B          100.0%     66.7%       3.0 KiB          1\n"},
		},
		{
			name: "show json",
			args: []string{"artifact", "show", sha, "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts/" + sha, answer: art}},
			want: want{stdoutJSON: art},
		},
		{
			name: "show unknown",
			args: []string{"artifact", "show", sha},
			api:  []exchange{{method: "GET", target: "/v1/artifacts/" + sha, status: 404, answer: `{"error":"no artifact ` + sha + `"}`}},
			want: want{code: 1, stderr: "outpost: artifact show: no artifact " + sha + "\n"},
		},
		{
			name: "show by name",
			args: []string{"artifact", "show", "hello-1.0.0.tar.gz", "--output", "json"},
			api: []exchange{
				{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `,` + other + `]}`},
				{method: "GET", target: "/v1/artifacts/" + sha, answer: art},
			},
			want: want{stdoutJSON: art},
		},
		{
			name: "show by the start of its hash",
			args: []string{"artifact", "show", sha[:8], "--output", "json"},
			api: []exchange{
				{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `,` + other + `]}`},
				{method: "GET", target: "/v1/artifacts/" + sha, answer: art},
			},
			want: want{stdoutJSON: art},
		},
		{
			name: "show a name nothing has",
			args: []string{"artifact", "show", "nope.tar.gz"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `]}`}},
			want: want{code: 2, stderrHas: []string{`outpost: artifact show: no artifact is named "nope.tar.gz" or has a SHA-256 starting so; see outpost artifact list`}},
		},
		{
			name: "show a name two artifacts have",
			args: []string{"artifact", "show", "hello-1.0.0.tar.gz"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `,` + strings.Replace(other, "other.bin", "hello-1.0.0.tar.gz", 1) + `]}`}},
			want: want{code: 2, stderrHas: []string{`"hello-1.0.0.tar.gz" matches 2 artifacts: 2cf24dba5fb0… (hello-1.0.0.tar.gz), 00000000000a… (hello-1.0.0.tar.gz); give the whole SHA-256`}},
		},
		{
			name: "a hash start shorter than 8 digits is no hash",
			args: []string{"artifact", "show", "2cf24db"},
			api:  []exchange{{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `]}`}},
			want: want{code: 2, stderrHas: []string{`no artifact is named "2cf24db"`}},
		},
		{
			name: "rm by name",
			args: []string{"artifact", "rm", "hello-1.0.0.tar.gz"},
			api: []exchange{
				{method: "GET", target: "/v1/artifacts", answer: `{"artifacts":[` + art + `]}`},
				{method: "DELETE", target: "/v1/artifacts/" + sha, answer: `{"sha256":"` + sha + `","name":"hello-1.0.0.tar.gz","size":1536,"freed_file_server":true}`},
			},
			want: want{stdout: "artifact " + sha + " removed: hello-1.0.0.tar.gz (1.5 KiB)\n"},
		},
		{
			name: "rm what only left bytes",
			args: []string{"artifact", "rm", sha},
			api:  []exchange{{method: "DELETE", target: "/v1/artifacts/" + sha, answer: `{"sha256":"` + sha + `","freed_file_server":true}`}},
			want: want{stdout: "artifact " + sha + " removed: its bytes left on the file server\n"},
		},
		{
			name: "rm in use",
			args: []string{"artifact", "rm", sha},
			api: []exchange{{method: "DELETE", target: "/v1/artifacts/" + sha, status: 409,
				answer: `{"error":"artifact 2cf24dba5fb0 (hello-1.0.0.tar.gz) is in use: the policy of office berlin; take it out of it first"}`}},
			want: want{code: 1, stderr: "outpost: artifact rm: artifact 2cf24dba5fb0 (hello-1.0.0.tar.gz) is in use: the policy of office berlin; take it out of it first\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
