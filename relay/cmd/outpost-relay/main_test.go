package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/relay"
)

var update = flag.Bool("update", false, "rewrite testdata/usage.golden")

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// The config file is never read: --version answers before it.
	env := map[string]string{relay.ConfigEnv: filepath.Join(t.TempDir(), "absent.yaml")}
	if err := run([]string{"--version"}, &stdout, &stderr, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != relay.Version+"\n" {
		t.Fatalf("--version printed %q, want %q", got, relay.Version+"\n")
	}
}

// The usage text says what the relay is and where settings come from, as
// the agent's and coordinator's do, and shows bool flags as booleans.
func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"--help"}, &stdout, &stderr, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	got := stderr.String()
	golden := filepath.Join("testdata", "usage.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("usage text differs from %s (go test -update to rewrite it):\n%s", golden, got)
	}
	for _, s := range []string{"Usage: outpost-relay [flags]", "OUTPOST_RELAY_CONFIG", "  -plain-http\n", "  -version\n", "  -shutdown-timeout duration\n"} {
		if !strings.Contains(got, s) {
			t.Errorf("usage text lacks %q", s)
		}
	}
}

func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	absent := filepath.Join(dir, "absent.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined"},
		{"arguments", []string{"serve"}, nil, "unexpected arguments"},
		{"bool flag given a word", []string{"--plain-http=maybe"}, nil, "-plain-http"},
		{"config file from the environment", nil, map[string]string{relay.ConfigEnv: absent}, absent},
		{"--config over the environment", []string{"--config", bad}, map[string]string{relay.ConfigEnv: absent}, `listen "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tt.args, &stdout, &stderr, func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want an error saying %q", tt.args, err, tt.wantErr)
			}
		})
	}
}
