package e2e

import (
	"context"
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
