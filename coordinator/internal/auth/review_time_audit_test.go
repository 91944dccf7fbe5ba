package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// The coordinator's audit trail has no retention, and each sign-in attempt
// that the rate limit refuses — refused before any password is hashed, so
// a client on the network can send thousands a second — is still written as
// its own audit record (one bbolt write transaction and fsync each, under
// the store's single write lock that check-ins also need). Hosts count
// their refused attempts past a few a second instead (README, Audit); the
// coordinator's own sign-in does not, so a scanner hitting /v1/login grows
// outpost.db without bound for as long as it runs.
func TestReviewTimeRateLimitedSignInsDoNotEachAddAnAuditRecord(t *testing.T) {
	s, st, c := newServer(t, "")
	addUser(t, st, "tina", "correct horse battery", "")
	const attempts = 2000
	limited := 0
	for i := 0; i < attempts; i++ {
		if _, err := s.Login("tina", "guess", "198.51.100.7"); errors.Is(err, ErrRateLimited) {
			limited++
		}
		c.add(time.Millisecond) // 2,000 attempts in 2 seconds
	}
	evs, err := st.Audit(store.AuditFilter{Action: "login", Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d attempts in 2 s, %d refused by the rate limit before any password check; %d audit records written", attempts, limited, len(evs))
	if len(evs) > 100 {
		t.Fatalf("%d audit records for %d sign-in attempts the rate limit refused unchecked: one durable record each, kept forever "+
			"(at 1,000 attempts/s about 86 million records, ~15 GB of outpost.db, a day)", len(evs), limited)
	}
}
