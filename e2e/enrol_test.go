package e2e

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// TestEnrolmentRetryIsTheSameMember: a member whose enrolment answer was
// lost retries with the key it kept, and gets the same member back without
// spending another use of its token; anyone else's key is refused once the
// token is used up.
func TestEnrolmentRetryIsTheSameMember(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	token := c.EnrollToken("berlin", "agent", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The first attempt reaches the coordinator, but the member never
	// writes its identity (the answer was lost, or it crashed): only the
	// key it made first is on its disk.
	dir := filepath.Join(t.TempDir(), "identity")
	os.MkdirAll(dir, 0o700)
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(filepath.Join(dir, "enrol.key"), key); err != nil {
		t.Fatal(err)
	}
	first, _, err := member.Enroll(ctx, c.QUIC, c.CA, token, "pc-retry", wire.Role_ROLE_AGENT, key)
	if err != nil {
		t.Fatal(err)
	}

	// The retry, as the agent makes it at its next start.
	id, err := member.LoadOrEnroll(ctx, dir, c.QUIC, c.CA, token, "pc-retry", wire.Role_ROLE_AGENT, logging.Discard())
	if err != nil {
		t.Fatalf("retry after a lost answer: %v", err)
	}
	if id.ID != first.ID {
		t.Fatalf("the retry made a new member %s, want %s", id.ID, first.ID)
	}
	if _, err := os.Stat(filepath.Join(dir, "enrol.key")); !os.IsNotExist(err) {
		t.Fatalf("enrol.key left behind after the identity was saved: %v", err)
	}
	var tokens struct {
		Tokens []struct{ Uses, Used int } `json:"tokens"`
	}
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &tokens)
	if len(tokens.Tokens) != 1 || tokens.Tokens[0].Used != 1 {
		t.Fatalf("tokens after a retry: %+v, want one use spent", tokens.Tokens)
	}
	if agents := c.Agents("berlin"); len(agents) != 1 {
		t.Fatalf("%d agents after a retry, want 1", len(agents))
	}

	// Another key with the spent token is another computer: refused.
	other, _ := tlsutil.NewKey()
	if _, _, err := member.Enroll(ctx, c.QUIC, c.CA, token, "pc-other", wire.Role_ROLE_AGENT, other); err == nil || !strings.Contains(err.Error(), "has been used 1 of 1 times") {
		t.Fatalf("a second computer on a one-use token: %v", err)
	}
}

// TestRevokedTokenEnrolsNothingMore: over real QUIC, a revoked token is
// refused with the reason, while the member that enrolled with it before
// stays, and its retry with the key it kept still gets it back.
func TestRevokedTokenEnrolsNothingMore(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	token := c.EnrollToken("berlin", "agent", 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, _ := tlsutil.NewKey()
	first, _, err := member.Enroll(ctx, c.QUIC, c.CA, token, "pc-before", wire.Role_ROLE_AGENT, key)
	if err != nil {
		t.Fatal(err)
	}
	var tokens struct {
		Tokens []struct{ ID, State string } `json:"tokens"`
	}
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &tokens)
	if len(tokens.Tokens) != 1 || tokens.Tokens[0].State != "valid" {
		t.Fatalf("tokens: %+v", tokens.Tokens)
	}
	c.MustDo("DELETE", "/v1/offices/berlin/tokens/"+tokens.Tokens[0].ID, nil, nil)

	other, _ := tlsutil.NewKey()
	if _, _, err := member.Enroll(ctx, c.QUIC, c.CA, token, "pc-after", wire.Role_ROLE_AGENT, other); err == nil || !strings.Contains(err.Error(), "was revoked at") {
		t.Fatalf("enrol with a revoked token: %v", err)
	}
	again, _, err := member.Enroll(ctx, c.QUIC, c.CA, token, "pc-before", wire.Role_ROLE_AGENT, key)
	if err != nil || again.ID != first.ID {
		t.Fatalf("the retry of an enrolment made before the revocation: %v, %v; want %s", again, err, first.ID)
	}
	if agents := c.Agents("berlin"); len(agents) != 1 || agents[0].ID != first.ID {
		t.Fatalf("agents after the revocation: %+v", agents)
	}
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &tokens)
	if len(tokens.Tokens) != 1 || tokens.Tokens[0].State != "revoked" {
		t.Fatalf("tokens after the revocation: %+v", tokens.Tokens)
	}
}

// TestEnrolmentWithAWrongFingerprintStopsAtOnce: a mistyped ca_fingerprint
// is a setting to correct: the enrolment ends at once with what to check,
// rather than retrying for ever as if the coordinator were unreachable.
func TestEnrolmentWithAWrongFingerprintStopsAtOnce(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	token := c.EnrollToken("berlin", "agent", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wrong := "sha256:" + strings.Repeat("ab", 32)
	var logs bytes.Buffer
	_, err := member.LoadOrEnrollRetrying(ctx, member.EnrolRequest{Dir: t.TempDir(), Coordinator: c.QUIC, Fingerprint: wrong, Token: token,
		Hostname: "pc-1", Role: wire.Role_ROLE_AGENT, FirstBackoff: time.Second}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err == nil || !errors.Is(err, tlsutil.ErrWrongCA) || !strings.Contains(err.Error(), "check ca_fingerprint in the config") || strings.Contains(err.Error(), "CRYPTO_ERROR") {
		t.Fatalf("enrol with a wrong fingerprint: %v", err)
	}
	if strings.Contains(logs.String(), "retrying") {
		t.Fatalf("it retried:\n%s", logs.String())
	}
}
