package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// Every parameter set Validate accepts (README: time 1–64 passes) makes
// hashes that verify: a coordinator configured with time 20 must not lock
// every user out at their next sign-in.
func TestPasswordHashedWithAnyValidKDFVerifies(t *testing.T) {
	for _, k := range []KDF{{Time: 17, MemoryKiB: 1024, Threads: 1}, {Time: 64, MemoryKiB: 1024, Threads: 1}, {Time: 1, MemoryKiB: 1024, Threads: 64}} {
		if err := k.Validate(); err != nil {
			t.Fatalf("%+v: %v", k, err)
		}
		h, err := HashPassword("correct horse battery", k)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := VerifyPassword(h, "correct horse battery")
		if err != nil || !ok {
			t.Errorf("KDF %+v (valid in the config): the right password verifies %v, %v; want true", k, ok, err)
		}
	}
}

// The record that counts rate-limited sign-ins too many to record one by
// one says where they came from, never the address of whoever signs in
// next: outpost audit shows that address as the source, and an admin
// would look for the attacker at an office's NAT.
func TestCountedRateLimitedSignInsAreNotPinnedOnTheNextSignInsAddress(t *testing.T) {
	s, st, c := newServer(t, "")
	addUser(t, st, "tina", "correct horse battery", "")
	addUser(t, st, "otto", "otto horse battery", "")
	const attacker, office = "198.51.100.7", "10.1.0.9"
	for i := 0; i < 2000; i++ {
		s.Login("tina", "guess", attacker)
		c.add(time.Millisecond)
	}
	if _, err := s.Login("otto", "otto horse battery", office); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Audit(store.AuditFilter{Action: "login", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Detail, "more sign-ins refused by the rate limit") {
			if ev.Remote == office {
				t.Fatalf("the count of %q is recorded as coming from %s, the address of otto's sign-in; they came from %s", ev.Detail, office, attacker)
			}
			return
		}
	}
	t.Fatalf("no record of the counted sign-ins: %+v", evs)
}

// The per-address limit holds for an IPv6 client too, which has a whole
// /64 to send from (hosts count break-glass failures the same way): 40
// failed sign-ins under many names from one /64 in a minute are limited
// as 40 from one IPv4 address are.
func TestSignInLimitPerAddressCoversAnIPv6Slash64(t *testing.T) {
	s, _, _ := newServer(t, "")
	limited := false
	for i := range 40 {
		_, err := s.Login(fmt.Sprintf("nobody%d", i), "whatever-password", fmt.Sprintf("2001:db8:1:2::%x", i+1))
		if errors.Is(err, ErrRateLimited) {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("40 failed sign-ins in a minute from one IPv6 /64, one address each, were not rate limited")
	}
	// Another /64 is another source.
	if _, err := s.Login("nobody-else", "whatever-password", "2001:db8:1:3::1"); errors.Is(err, ErrRateLimited) {
		t.Fatal("a sign-in from another /64 was rate limited")
	}
}
