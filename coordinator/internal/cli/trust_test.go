package cli

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// The CLI reaches the admin API over HTTPS only when it trusts the
// coordinator's certificate: by the CA's fingerprint, a CA file, or the
// fingerprint outpost login kept.
func TestHTTPSTrustsTheCoordinatorCA(t *testing.T) {
	c := coordinatortest.New(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.C.CACertDER()}), 0o644); err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("ab", 32)
	cfgDir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"untrusted", nil, nil, "does not trust"},
		{"wrong fingerprint", []string{"--ca-fingerprint", other}, nil, "does not trust"},
		{"fingerprint", []string{"--ca-fingerprint", c.CA}, nil, ""},
		{"fingerprint from env", nil, map[string]string{"OUTPOST_CA_FINGERPRINT": c.CA}, ""},
		{"CA file", []string{"--ca", caFile}, nil, ""},
		{"plain HTTP still", []string{"--server", c.URL}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"OUTPOST_TOKEN": c.Token, "OUTPOST_SERVER": c.HTTPS, "OUTPOST_CONFIG_DIR": cfgDir}
			for k, v := range tc.env {
				env[k] = v
			}
			var stdout, stderr bytes.Buffer
			args := append(append([]string{}, tc.args...), "office", "list")
			code := Main(context.Background(), args, nil, &stdout, &stderr, func(k string) string { return env[k] })
			if tc.wantErr == "" && code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if tc.wantErr != "" && (code == 0 || !strings.Contains(stderr.String(), tc.wantErr) || !strings.Contains(stderr.String(), "--ca-fingerprint")) {
				t.Fatalf("exit %d, stderr %q; want a refusal mentioning %q and how to trust", code, stderr.String(), tc.wantErr)
			}
		})
	}

	// A sign-in over HTTPS keeps the fingerprint, and later commands trust
	// the coordinator by it without being told.
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "correct horse battery", "role": "admin"}, nil)
	env := map[string]string{"OUTPOST_SERVER": c.HTTPS, "OUTPOST_CONFIG_DIR": cfgDir}
	getenv := func(k string) string { return env[k] }
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--ca-fingerprint", c.CA, "login", "tina", "--password-stdin"},
		strings.NewReader("correct horse battery\n"), &stdout, &stderr, getenv); code != 0 {
		t.Fatalf("login: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := Main(context.Background(), []string{"office", "list"}, nil, &stdout, &stderr, getenv); code != 0 {
		t.Fatalf("after login: exit %d: %s", code, stderr.String())
	}
}
