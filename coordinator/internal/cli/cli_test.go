package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGlobalFlags(t *testing.T) {
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "admin.token", []byte("\n  "+testToken+"\n"))
	emptyFile := writeFile(t, dir, "empty.token", []byte(" \n"))
	list := exchange{method: "GET", target: "/v1/offices", answer: `{"offices":[` + berlinJSON + `]}`}
	listed := "NAME    MODE   INTERVAL  TIME ZONE      SUBNETS                     REVISION  AGENTS  LOCATION    DESCRIPTION\n" +
		"berlin  relay  2m0s      Europe/Berlin  10.1.0.0/16,192.168.7.0/24  3         12      Berlin, DE  Berlin branch\n"

	tests := []struct {
		name string
		env  map[string]string // on top of OUTPOST_SERVER and OUTPOST_TOKEN
		args []string          // "SERVER" is replaced by the fake's URL
		api  []exchange
		want want
	}{
		{
			name: "before the command",
			args: []string{"--output", "json", "office", "list"},
			api:  []exchange{list},
			want: want{stdoutJSON: `{"offices":[` + berlinJSON + `]}`},
		},
		{
			name: "between group and command",
			args: []string{"office", "--output", "json", "list"},
			api:  []exchange{list},
			want: want{stdoutJSON: `{"offices":[` + berlinJSON + `]}`},
		},
		{
			name: "the last one wins",
			args: []string{"--output", "json", "office", "list", "--output", "table"},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "--server beats OUTPOST_SERVER",
			env:  map[string]string{"OUTPOST_SERVER": "http://127.0.0.1:1"},
			args: []string{"office", "list", "--server", "SERVER/"},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "--token beats OUTPOST_TOKEN",
			env:  map[string]string{"OUTPOST_TOKEN": "wrong-token-from-env"},
			args: []string{"--token", testToken, "office", "list"},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "--token-file is read and trimmed",
			env:  map[string]string{"OUTPOST_TOKEN": ""},
			args: []string{"office", "list", "--token-file", tokenFile},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "OUTPOST_TOKEN_FILE",
			env:  map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_TOKEN_FILE": tokenFile},
			args: []string{"office", "list"},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "--token-file beats OUTPOST_TOKEN",
			env:  map[string]string{"OUTPOST_TOKEN": "wrong-token-from-env"},
			args: []string{"office", "list", "--token-file", tokenFile},
			api:  []exchange{list},
			want: want{stdout: listed},
		},
		{
			name: "no token and no sign-in names both ways in",
			env:  map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_CONFIG_DIR": t.TempDir()},
			args: []string{"office", "list"},
			want: want{code: 1, stderr: "outpost: office list: not signed in and no admin token: sign in with outpost login USER, or pass the admin token with --token or OUTPOST_TOKEN, or its file with --token-file or OUTPOST_TOKEN_FILE (the coordinator writes it to its data dir as admin.token)\n"},
		},
		{
			name: "a missing token file",
			args: []string{"office", "list", "--token-file", filepath.Join(dir, "nope")},
			want: want{code: 1, stderrHas: []string{"outpost: office list: read the admin token (--token-file): open " + filepath.Join(dir, "nope") + ": no such file", "<data-dir>/admin.token"}},
		},
		{
			name: "an empty token file",
			env:  map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_TOKEN_FILE": emptyFile},
			args: []string{"office", "list"},
			want: want{code: 1, stderrHas: []string{"admin token file " + emptyFile + " (OUTPOST_TOKEN_FILE) is empty"}},
		},
		{
			name: "both --token and --token-file",
			args: []string{"office", "list", "--token", testToken, "--token-file", tokenFile},
			want: want{code: 2, stderrHas: []string{"outpost: office list: pass --token or --token-file, not both"}},
		},
		{
			name: "an unknown output",
			args: []string{"office", "list", "--output", "yaml"},
			want: want{code: 2, stderrHas: []string{`outpost: office list: --output "yaml": want table or json`}},
		},
		{
			name: "a server that is no URL",
			args: []string{"office", "list", "--server", "coordinator:8020"},
			want: want{code: 2, stderrHas: []string{`outpost: office list: --server "coordinator:8020": want the coordinator's URL, like http://127.0.0.1:8020`}},
		},
		{
			name: "a bad timeout",
			args: []string{"office", "list", "--timeout", "soon"},
			want: want{code: 2, stderrHas: []string{`invalid value "soon" for flag -timeout`}},
		},
		{
			name: "an unknown global flag before the command",
			args: []string{"--verbose", "office", "list"},
			want: want{code: 2, stderr: "outpost: flag provided but not defined: -verbose\nRun 'outpost help' for usage.\n"},
		},
		{
			name: "arguments after -- are not flags",
			args: []string{"office", "show", "--", "-x"},
			api:  []exchange{{method: "GET", target: "/v1/offices/-x", status: 404, answer: `{"error":"no office \"-x\""}`}},
			want: want{code: 1, stderr: "outpost: office show: no office \"-x\"\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "SERVER", f.URL())
			}
			tt.want.check(t, runCLI(t, f, cliRun{env: tt.env}, args...))
		})
	}
}

func TestAPIErrors(t *testing.T) {
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)

	tests := []struct {
		name   string
		server string // empty: the fake
		args   []string
		api    []exchange
		want   want
	}{
		{
			name: "a wrong token says where to find the right one, and never shows it",
			args: []string{"office", "list"},
			api:  []exchange{{method: "GET", target: "/v1/offices", status: 401, answer: `{"error":"admin token ` + testToken + ` is not valid"}`}},
			want: want{code: 1, stderrHas: []string{
				"outpost: office list: the coordinator at ", "refused the admin token (admin token [redacted] is not valid): ",
				"--token or OUTPOST_TOKEN", "--token-file or OUTPOST_TOKEN_FILE", "admin.token"}},
		},
		{
			name: "an error message that echoes the token is redacted",
			args: []string{"office", "add", "berlin"},
			api: []exchange{{method: "POST", target: "/v1/offices", body: `{"name":"berlin"}`, status: 500,
				answer: `{"error":"store: write Bearer ` + testToken + `: disk full"}`}},
			want: want{code: 1, stderr: "outpost: office add: store: write Bearer [redacted]: disk full\n"},
		},
		{
			name: "an answer without a JSON error",
			args: []string{"office", "list"},
			api:  []exchange{{method: "GET", target: "/v1/offices", status: 502, answer: "<html>Bad Gateway</html>"}},
			want: want{code: 1, stderrHas: []string{"outpost: office list: the coordinator at http://127.0.0.1:", "answered 502 Bad Gateway: <html>Bad Gateway</html>\n"}},
		},
		{
			name: "a 404 without a JSON error hints at the wrong server",
			args: []string{"office", "list"},
			api:  []exchange{{method: "GET", target: "/v1/offices", status: 404, answer: "404 page not found"}},
			want: want{code: 1, stderrHas: []string{"answered 404 Not Found: 404 page not found; is --server the coordinator's admin address?"}},
		},
		{
			name: "an answer that is not JSON",
			args: []string{"office", "show", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin", answer: "<html>"}},
			want: want{code: 1, stderrHas: []string{"outpost: office show: the coordinator's answer is not a valid office", "do CLI and coordinator versions match?"}},
		},
		{
			name:   "a refused connection names the server and the flag",
			server: refused,
			args:   []string{"office", "list"},
			want:   want{code: 1, stderr: "outpost: office list: cannot reach the coordinator at " + refused + ": connection refused; is it running there? Check --server or OUTPOST_SERVER\n"},
		},
		{
			name:   "a server that does not answer in time",
			server: hang.URL,
			args:   []string{"office", "list", "--timeout", "100ms"},
			want:   want{code: 1, stderr: "outpost: office list: no answer from the coordinator at " + hang.URL + " within 100ms; raise --timeout if it is busy\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			c := cliRun{}
			if tt.server != "" {
				c.env = map[string]string{"OUTPOST_SERVER": tt.server}
			}
			tt.want.check(t, runCLI(t, f, c, tt.args...))
		})
	}
}

func TestInterrupted(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	env := map[string]string{"OUTPOST_SERVER": hang.URL, "OUTPOST_TOKEN": testToken}
	code := Main(ctx, []string{"agent", "wait", "--office", "berlin", "--count", "1"}, nil, &stdout, &stderr, func(k string) string { return env[k] })
	if code != 130 || stderr.String() != "outpost: agent wait: interrupted\n" {
		t.Errorf("exit %d, stderr %q; want 130 (a shell's status for Ctrl-C) and interrupted", code, stderr.String())
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"no command", nil, want{code: 2, stderrHas: []string{"Usage:\n  outpost [global flags] COMMAND", "office", "create, list, change and remove offices (add, list, show,"}}},
		{"unknown command", []string{"offices"}, want{code: 2, stderr: "outpost: unknown command \"offices\" (did you mean \"office\"?); commands: office, token, artifact, policy, agent, installer, patch, user, group, perm, login, logout, audit, hash-password, hosts, exec, connect, sync, reboot, inventory, cp, backup, ca, version, help\nRun 'outpost help' for usage.\n"}},
		{"a group without a command", []string{"office"}, want{code: 2, stderrHas: []string{"Usage: outpost office COMMAND", "  add NAME                         create an office\n"}}},
		{"an unknown command of a group", []string{"agent", "kill"}, want{code: 2, stderrHas: []string{`outpost: unknown command "agent kill"; agent commands: list, show, search, move, rm, wait`}}},
		{"a typo of a group's command", []string{"agent", "shwo"}, want{code: 2, stderrHas: []string{`outpost: unknown command "agent shwo" (did you mean "show"?); agent commands:`}}},
		{"a typo of a command", []string{"bakcup"}, want{code: 2, stderrHas: []string{`outpost: unknown command "bakcup" (did you mean "backup"?); commands:`}}},
		{"help of an unknown command", []string{"help", "office", "fly"}, want{code: 2, stderrHas: []string{`outpost: help: unknown command "office fly"`}}},
		{"help of an unknown command of a group shows the group's commands", []string{"help", "office", "nosuch"}, want{code: 2, stderrHas: []string{
			"outpost: help: unknown command \"office nosuch\"; office commands: add, list, show, edit, rotate-key, rm",
			"Usage: outpost office COMMAND", "  add NAME                         create an office\n"}}},
		{"version takes no arguments", []string{"version", "now"}, want{code: 2, stderrHas: []string{`outpost: version: unexpected argument "now"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.check(t, run(t, nil, tt.args...))
		})
	}
}

// TestHelp checks that every command, group and the top level has help on
// stdout with exit 0, both as "help X" and as "X -h".
func TestHelp(t *testing.T) {
	type helpCase struct {
		name string
		args []string
		has  []string
	}
	cases := []helpCase{
		{"help", []string{"help"}, []string{"Usage:\n  outpost [global flags] COMMAND", "--token-file PATH", "OUTPOST_SERVER", "Exit codes: 0 ok, 1 error, 2 usage."}},
		{"-h", []string{"-h"}, []string{"Usage:\n  outpost [global flags] COMMAND"}},
		{"--help", []string{"--help"}, []string{"Usage:\n  outpost [global flags] COMMAND"}},
		{"help -h", []string{"help", "-h"}, []string{"Usage:\n  outpost [global flags] COMMAND"}},
	}
	for _, g := range groups {
		cases = append(cases,
			helpCase{"help " + g.name, []string{"help", g.name}, []string{"Usage: outpost " + g.name + " COMMAND"}},
			helpCase{g.name + " -h", []string{g.name, "-h"}, []string{"Usage: outpost " + g.name + " COMMAND"}})
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		has := []string{"Usage: outpost " + c.usageLine() + "\n"}
		if !c.offline {
			has = append(has, "Examples:\n  outpost "+c.name)
		}
		cases = append(cases,
			helpCase{"help " + c.name, append([]string{"help"}, words...), has},
			helpCase{c.name + " -h", append(words, "-h"), has},
			helpCase{c.name + " --help after flags", append(words, "--output", "json", "--help"), has})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, nil, tc.args...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", res.code, res.stderr)
			}
			for _, s := range tc.has {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("help lacks %q:\n%s", s, res.stdout)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"table", []string{"version"}, want{stdout: "outpost dev (" + goVersion() + ")\n"}},
		{"json", []string{"version", "--output", "json"}, want{stdoutJSON: `{"version":"dev","go":"` + goVersion() + `"}`}},
		{"--version", []string{"--version"}, want{stdout: "outpost dev (" + goVersion() + ")\n"}},
		{"-v", []string{"-v"}, want{stdout: "outpost dev (" + goVersion() + ")\n"}},
		{"--version json", []string{"--output", "json", "--version"}, want{stdoutJSON: `{"version":"dev","go":"` + goVersion() + `"}`}},
		{"--version with a command", []string{"--version", "office", "list"}, want{code: 2, stderrHas: []string{`outpost: version: unexpected argument "office"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// version needs neither server nor token: run it through Main
			// with an empty environment.
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, nil, &stdout, &stderr, func(string) string { return "" })
			tt.want.check(t, cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()})
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos string
		wantA   string
		wantB   bool
	}{
		{"flags first", []string{"-a", "x", "p1", "p2"}, "[p1 p2]", "x", false},
		{"flags between", []string{"p1", "--a=x", "p2", "-b"}, "[p1 p2]", "x", true},
		{"double dash ends flags", []string{"p1", "--", "-b", "--a=y"}, "[p1 -b --a=y]", "", false},
		{"a lone dash is an argument", []string{"-", "-b"}, "[-]", "", true},
		{"nothing", nil, "[]", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("t")
			a := fs.String("a", "", "")
			b := fs.Bool("b", false, "")
			pos, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(append([]string{"["}, strings.Join(pos, " "), "]"), ""); got != tt.wantPos || *a != tt.wantA || *b != tt.wantB {
				t.Errorf("got %s a=%q b=%v, want %s a=%q b=%v", got, *a, *b, tt.wantPos, tt.wantA, tt.wantB)
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	tests := []struct {
		name string
		w    interface{ Write([]byte) (int, error) }
		want bool
	}{
		{"buffer", &bytes.Buffer{}, false},
		{"regular file", f, false},
		{"/dev/null, a character device but no terminal", devNull, false},
		{"a writer that says it is a terminal", &terminalWriter{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isTerminal(tt.w); got != tt.want {
				t.Errorf("isTerminal = %v, want %v", got, tt.want)
			}
		})
	}
}

// Help is alike across commands: every command whose run takes global flags
// says which, and flag placeholders are words in capitals.
func TestHelpIsConsistent(t *testing.T) {
	for _, name := range []string{"exec", "connect", "cp", "inventory", "login", "version"} {
		t.Run(name+" names its global flags", func(t *testing.T) {
			res := run(t, nil, "help", name)
			if !strings.Contains(res.stdout, "\nGlobal flags: ") {
				t.Errorf("help %s has no Global flags line:\n%s", name, res.stdout)
			}
		})
	}
	for _, c := range commands {
		t.Run(c.name+" placeholders", func(t *testing.T) {
			res := run(t, nil, append([]string{"help"}, strings.Fields(c.name)...)...)
			for _, line := range strings.Split(res.stdout, "\n") {
				if strings.HasPrefix(line, "  --") && strings.HasSuffix(line, " string") {
					t.Errorf("help %s shows a flag as %q: name its value, like TEXT or NAME", c.name, line)
				}
			}
		})
	}
	t.Run("login says USER may come from OUTPOST_USER", func(t *testing.T) {
		res := run(t, nil, "help", "login")
		if !strings.Contains(res.stdout, "OUTPOST_USER") {
			t.Errorf("help login does not mention OUTPOST_USER:\n%s", res.stdout)
		}
	})
	t.Run("inventory's example flag is a global one it lists", func(t *testing.T) {
		res := run(t, nil, "help", "inventory")
		if !strings.Contains(res.stdout, "--output json") || !strings.Contains(res.stdout, "Global flags: --output") {
			t.Errorf("help inventory:\n%s", res.stdout)
		}
	})
}
