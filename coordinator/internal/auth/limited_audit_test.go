package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// A sign-in attempt that the rate limit refuses costs its sender nothing
// (no password is hashed), so a client on the network can send thousands a
// second. Recorded one by one, each would be a write transaction and an
// fsync under the store's one write lock, and a scanner would grow
// outpost.db without bound. Past a burst they are counted, as hosts count
// theirs, and the count is recorded with the next one that is.
func TestRateLimitedSignInsAreCountedNotEachRecorded(t *testing.T) {
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
	c.add(time.Minute)
	if _, err := s.Login("tina", "guess", "198.51.100.7"); err == nil {
		t.Fatal("a minute on, a wrong password signed in")
	}
	evs, err = st.Audit(store.AuditFilter{Action: "login", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Detail, "more sign-ins refused by the rate limit since") {
			return
		}
	}
	t.Fatalf("the attempts counted are not recorded: %+v", evs)
}
