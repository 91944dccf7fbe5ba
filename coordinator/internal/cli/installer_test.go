package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const installerAnswer = `{"office":"berlin","coordinator":"outpost.example.org:8027","ca_fingerprint":"sha256:abababababababababababababababababababababababababababababababab",` +
	`"token":"opt_installersecret","token_id":"ab12cd34","expires":"2025-06-08T12:00:00Z","uses":100}`

// binDir is a directory with a Linux executable standing in for the agent
// and a script for a plugin.
func binDir(t *testing.T, withAgent bool) string {
	t.Helper()
	dir := t.TempDir()
	if withAgent {
		exe, err := exec.LookPath("true")
		if err != nil {
			t.Skip("no true(1):", err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "outpost-agent"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "outpost-plugin-package"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInstallerBuild(t *testing.T) {
	ask := exchange{method: "POST", target: "/v1/offices/berlin/installer", ctype: "application/json",
		body: `{"uses":100,"ttl":"168h"}`, status: 201, answer: installerAnswer}
	used := t.TempDir()
	os.WriteFile(filepath.Join(used, "old"), nil, 0o644)
	tests := []struct {
		name  string
		args  []string
		agent bool
		api   []exchange
		want  want
	}{
		{name: "builds", agent: true, api: []exchange{ask}, args: []string{"installer", "build", "--office", "berlin"}},
		{name: "uses and ttl", agent: true, args: []string{"installer", "build", "--office", "berlin", "--uses", "7", "--ttl", "2h"},
			api: []exchange{{method: "POST", target: "/v1/offices/berlin/installer", body: `{"uses":7,"ttl":"2h"}`, status: 201, answer: installerAnswer}},
		},
		{name: "unknown office", agent: true, args: []string{"installer", "build", "--office", "paris"},
			api: []exchange{{method: "POST", target: "/v1/offices/paris/installer", body: `{"uses":100,"ttl":"168h"}`, status: 404,
				answer: `{"error":"office paris (of the installer) does not exist: see outpost office list"}`}},
			want: want{code: 1, stderr: "outpost: installer build: office paris (of the installer) does not exist: see outpost office list\n"}},
		{name: "no agent binary: no token is made", args: []string{"installer", "build", "--office", "berlin"},
			want: want{code: 1, stderrHas: []string{"no outpost-agent in", "pass --bin"}}},
		{name: "--out in use: no token is made", agent: true, args: []string{"installer", "build", "--office", "berlin", "--out", used},
			want: want{code: 1, stderrHas: []string{"is not empty"}}},
		{name: "no office", agent: true, args: []string{"installer", "build"}, want: want{code: 2, stderrHas: []string{"missing --office NAME"}}},
		{name: "bad uses", agent: true, args: []string{"installer", "build", "--office", "berlin", "--uses", "0"}, want: want{code: 2, stderrHas: []string{"--uses 0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			args := append([]string{}, tt.args...)
			out := filepath.Join(t.TempDir(), "out")
			if !strings.Contains(strings.Join(args, " "), "--out") {
				args = append(args, "--out", out)
			}
			args = append(args, "--bin", binDir(t, tt.agent))
			res := run(t, f, args...)
			if tt.want.code != 0 {
				tt.want.check(t, res)
				return
			}
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
			}
			for _, s := range []string{"installer for office berlin in " + out, "coordinator outpost.example.org:8027", "token ab12cd34: 100 uses",
				"agent.yaml", "plugins/outpost-plugin-package", "sudo apt install ./outpost-agent_0.0.0~dev_berlin_"} {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			yml, err := os.ReadFile(filepath.Join(out, "agent.yaml"))
			if err != nil || !strings.Contains(string(yml), "enroll_token: opt_installersecret") || !strings.Contains(string(yml), "coordinator: outpost.example.org:8027") {
				t.Errorf("agent.yaml: %v\n%s", err, yml)
			}
			if strings.Contains(res.stdout+res.stderr, "opt_installersecret") {
				t.Errorf("the token's secret was printed")
			}
		})
	}
}

func TestInstallerBuildJSON(t *testing.T) {
	f := newFakeAPI(t, exchange{method: "POST", target: "/v1/offices/berlin/installer", body: `{"uses":100,"ttl":"168h"}`, status: 201, answer: installerAnswer})
	out := filepath.Join(t.TempDir(), "out")
	res := run(t, f, "--output", "json", "installer", "build", "--office", "berlin", "--out", out, "--bin", binDir(t, true))
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, res.stdout)
	}
	if got["dir"] != out || got["token_id"] != "ab12cd34" || got["coordinator"] != "outpost.example.org:8027" || !strings.HasSuffix(got["deb"].(string), ".deb") {
		t.Fatalf("json %v", got)
	}
	if _, ok := got["token"]; ok || strings.Contains(res.stdout, "opt_installersecret") {
		t.Fatalf("the token's secret is in the JSON output")
	}
}
