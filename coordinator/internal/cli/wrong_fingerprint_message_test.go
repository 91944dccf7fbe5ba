package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// A fingerprint that names another CA is said to be the problem, with
// where the right one is, rather than advice to pass a fingerprint (one
// was passed) or to check "the config" (the CLI has none).
func TestWrongFingerprintSaysWhichAndWhere(t *testing.T) {
	c := coordinatortest.New(t)
	other := "sha256:" + strings.Repeat("ab", 32)
	env := map[string]string{"OUTPOST_TOKEN": c.Token, "OUTPOST_SERVER": c.HTTPS, "OUTPOST_CONFIG_DIR": t.TempDir(), "OUTPOST_CA_FINGERPRINT": other}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"office", "list"}, nil, &stdout, &stderr, func(k string) string { return env[k] })
	msg := stderr.String()
	for _, want := range []string{"does not trust", "its CA is not the one " + other + " names", "<data-dir>/ca.fingerprint", "--ca-fingerprint"} {
		if code != 1 || !strings.Contains(msg, want) {
			t.Errorf("exit %d; stderr lacks %q:\n%s", code, want, msg)
		}
	}
	if strings.Contains(msg, "in the config") {
		t.Errorf("stderr speaks of a config the CLI does not have:\n%s", msg)
	}
}
