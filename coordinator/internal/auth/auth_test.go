package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// testKDF keeps tests fast; the format and the code path are the real ones.
var testKDF = KDF{Time: 1, MemoryKiB: 1024, Threads: 1}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newServer(t testing.TB, issuer string) (*Server, *store.Store, *clock) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.KDF, cfg.Issuer = testKDF, issuer
	s, err := New(cfg, st, key, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s.SetClock(c.now)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	return s, st, c
}

func addUser(t testing.TB, st *store.Store, name, password, role string) {
	t.Helper()
	h, err := HashPassword(password, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(store.User{Name: name, PasswordHash: h, Role: role}); err != nil {
		t.Fatal(err)
	}
}

func TestKDFDefaultsAndBounds(t *testing.T) {
	k := KDF{Time: 3}.WithDefaults()
	if want := (KDF{Time: 3, MemoryKiB: DefaultKDF().MemoryKiB, Threads: DefaultKDF().Threads}); k != want {
		t.Fatalf("got %+v, want %+v", k, want)
	}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	// A partial setting hashes, where it once panicked on zero threads.
	if _, err := HashPassword("correct horse battery", KDF{MemoryKiB: 2048}.WithDefaults()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []KDF{{Time: 65, MemoryKiB: 1024, Threads: 1}, {Time: 1, MemoryKiB: 512, Threads: 1}, {Time: 1, MemoryKiB: 5 << 20, Threads: 1}, {Time: 1, MemoryKiB: 1024, Threads: 65}} {
		if bad.Validate() == nil {
			t.Errorf("%+v passed", bad)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery", testKDF)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	h2, _ := HashPassword("correct horse battery", testKDF)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse battery", true}, {"correct horse batterY", false}, {"", false}} {
		ok, err := VerifyPassword(h, tc.pw)
		if err != nil || ok != tc.want {
			t.Errorf("verify %q = %v, %v; want %v", tc.pw, ok, err, tc.want)
		}
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=1024,t=1,p=1$!!$!!", "$bcrypt$x", "$argon2id$v=19$m=999999999,t=1,p=1$AAAA$AAAA"} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("damaged hash %q verified without error", bad)
		}
	}
	if _, err := HashPassword("short", testKDF); err == nil {
		t.Error("a 5-character password was accepted")
	}
}

func FuzzVerifyPassword(f *testing.F) {
	h, _ := HashPassword("correct horse battery", testKDF)
	f.Add(h, "correct horse battery")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA", "")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		_, _ = VerifyPassword(encoded, pw)
	})
}

func TestLoginIssuesVerifiableTokens(t *testing.T) {
	s, st, _ := newServer(t, "sha256:aa")
	addUser(t, st, "tina", "tina-password-1", RoleNone)
	if err := st.CreateGroup(store.Group{Name: "berlin-techs", Members: []string{"tina"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Login("tina", "tina-password-1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Verify(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.User != "tina" || len(p.Groups) != 1 || p.Groups[0] != "berlin-techs" || p.Token.GetIssuer() != "sha256:aa" {
		t.Fatalf("principal %+v", p)
	}
	// Hosts verify with the published key and no coordinator.
	keys := map[string]ed25519.PublicKey{}
	for _, k := range s.TokenKeys() {
		keys[k.GetKeyId()] = k.GetPublicKey()
	}
	if _, err := wire.VerifyToken(tok.AccessToken, keys, time.Date(2026, 11, 25, 12, 1, 0, 0, time.UTC)); err != nil {
		t.Fatalf("host-side verification: %v", err)
	}
	ev, _ := st.Audit(store.AuditFilter{Actor: "tina", Action: "login"})
	if len(ev) != 1 || !ev[0].Allowed || ev[0].Remote != "10.0.0.1" {
		t.Fatalf("audit of the sign-in: %+v", ev)
	}
}

func TestTokensRefused(t *testing.T) {
	s, st, c := newServer(t, "sha256:aa")
	other, ost, _ := newServer(t, "sha256:bb")
	addUser(t, st, "tina", "tina-password-1", RoleNone)
	addUser(t, ost, "tina", "tina-password-1", RoleNone)
	good, err := s.Login("tina", "tina-password-1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Login("tina", "tina-password-1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// Forge: flip a byte in the signed part of a real token.
	raw := []byte(good.AccessToken)
	i := len(wire.TokenPrefix) + 20
	raw[i] ^= 'A' ^ 'B'
	if raw[i] == good.AccessToken[i] {
		raw[i] = 'C'
	}
	// A token signed with a key of its own, claiming this coordinator.
	_, rogue, _ := ed25519.GenerateKey(nil)
	selfSigned, _ := wire.SignToken(rogue, &wire.AccessToken{Issuer: "sha256:aa", User: "admin", IssuedUnixMs: c.now().UnixMilli(), ExpiresUnixMs: c.now().Add(time.Hour).UnixMilli()})

	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"forged", string(raw), nil},
		{"self-signed", selfSigned, wire.ErrTokenUnknownKey},
		{"other coordinator", foreign.AccessToken, wire.ErrTokenUnknownKey},
		{"garbage", "ott1.!!!", wire.ErrTokenMalformed},
		{"admin-token-like", "opa_123", wire.ErrTokenMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Verify(tc.token)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		c.add(11 * time.Minute)
		defer c.add(-11 * time.Minute)
		if _, err := s.Verify(good.AccessToken); !errors.Is(err, wire.ErrTokenExpired) {
			t.Fatalf("err %v, want expired", err)
		}
	})
	t.Run("disabled user", func(t *testing.T) {
		tok, _ := s.Login("tina", "tina-password-1", "10.0.0.1")
		if _, err := st.UpdateUser("tina", func(u *store.User) error { u.Disabled = true; return nil }); err != nil {
			t.Fatal(err)
		}
		defer st.UpdateUser("tina", func(u *store.User) error { u.Disabled = false; return nil })
		if _, err := s.Verify(tok.AccessToken); !errors.Is(err, ErrDisabled) {
			t.Fatalf("err %v, want disabled", err)
		}
		if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); !errors.Is(err, ErrDisabled) {
			t.Fatalf("login of a disabled user: %v", err)
		}
	})
	t.Run("revoked by group change", func(t *testing.T) {
		tok, _ := s.Login("tina", "tina-password-1", "10.0.0.1")
		c.add(time.Millisecond)
		if err := s.Revoke("tina"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(tok.AccessToken); !errors.Is(err, ErrRevoked) {
			t.Fatalf("err %v, want revoked", err)
		}
		c.add(time.Millisecond)
		fresh, err := s.Login("tina", "tina-password-1", "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(fresh.AccessToken); err != nil {
			t.Fatalf("a token issued after the revocation: %v", err)
		}
		l, _ := s.Revocations()
		at, _ := s.Verify(fresh.AccessToken)
		if l.Revoked(at.Token) {
			t.Fatal("revocation list refuses a fresh token")
		}
	})
}

func TestRefreshRotationAndReplay(t *testing.T) {
	s, st, c := newServer(t, "sha256:aa")
	addUser(t, st, "tina", "tina-password-1", RoleNone)
	first, err := s.Login("tina", "tina-password-1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	second, err := s.Refresh(first.RefreshToken, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh token was not rotated")
	}
	c.add(time.Second)
	// The first one again: a stolen copy. The whole sign-in is revoked.
	if _, err := s.Refresh(first.RefreshToken, "10.9.9.9"); !errors.Is(err, ErrRefreshReplay) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := s.Refresh(second.RefreshToken, "10.0.0.1"); err == nil {
		t.Fatal("the rotated token of a replayed family still works")
	}
	if _, err := s.Verify(second.AccessToken); !errors.Is(err, ErrRevoked) {
		t.Fatalf("access token of a replayed family: %v", err)
	}
	if _, err := s.Refresh("otr_unknown", "10.0.0.1"); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("unknown refresh token: %v", err)
	}
	c.add(time.Second)
	again, err := s.Login("tina", "tina-password-1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.add(13 * time.Hour)
	if _, err := s.Refresh(again.RefreshToken, "10.0.0.1"); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("expired refresh token: %v", err)
	}
}

func TestLockoutAndRateLimit(t *testing.T) {
	s, st, c := newServer(t, "sha256:aa")
	addUser(t, st, "tina", "tina-password-1", RoleNone)
	for i := range 4 {
		if _, err := s.Login("tina", "wrong-password", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	// A success resets the count.
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	for range 5 {
		s.Login("tina", "wrong-password", "10.0.0.1")
	}
	var le *LockedError
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); !errors.As(err, &le) {
		t.Fatalf("right password on a locked account: %v", err)
	}
	c.add(16 * time.Minute)
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	// Rate limit: many names from one address, each tried once; only
	// failures count against an address.
	c.add(time.Minute)
	for range 35 {
		if _, err := s.Login("tina", "tina-password-1", "10.6.6.7"); errors.Is(err, ErrRateLimited) {
			t.Fatal("successful sign-ins from one address were rate limited")
		}
		c.add(6 * time.Second) // under the per-name limit
	}
	limited := false
	for i := range 40 {
		_, err := s.Login(fmt.Sprintf("nobody%d", i), "whatever-password", "10.6.6.6")
		if errors.Is(err, ErrRateLimited) {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("40 failed attempts from one address in a minute were not rate limited")
	}
	ev, _ := st.Audit(store.AuditFilter{Action: "login"})
	if len(ev) < 12 {
		t.Fatalf("only %d sign-in events audited", len(ev))
	}
}

// The signed list is handed out again, issue time and all, until the list
// changes; then it is issued later than before, even with the clock back.
func TestSignedRevocationsChangeOnlyWithTheList(t *testing.T) {
	s, st, c := newServer(t, "test")
	addUser(t, st, "tina", "tina-password-1", "technician")
	first, err := s.SignedRevocations()
	if err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	again, err := s.SignedRevocations()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first, again) {
		t.Fatal("the same list was issued anew")
	}
	c.add(-time.Hour) // the clock goes back
	if err := s.Revoke("tina"); err != nil {
		t.Fatal(err)
	}
	changed, err := s.SignedRevocations()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{s.kid: s.key.Public().(ed25519.PublicKey)}
	l1, err := wire.VerifyRevocations(first, keys)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := wire.VerifyRevocations(changed, keys)
	if err != nil {
		t.Fatal(err)
	}
	if l2.GetIssuedUnixMs() <= l1.GetIssuedUnixMs() || len(l2.GetRevocations()) != len(l1.GetRevocations())+1 {
		t.Fatalf("after a revocation: issued %d (before %d), %d entries (before %d)", l2.GetIssuedUnixMs(), l1.GetIssuedUnixMs(), len(l2.GetRevocations()), len(l1.GetRevocations()))
	}
}

// Wrong passwords sent all at once for one user from one address: every
// request arrives before any password check ends, and still no more than
// the limit are let through, no more than MaxFailures passwords are
// checked, the account ends up locked, and the right password sent
// afterwards is refused until the lock ends.
func TestConcurrentLoginsAreLimited(t *testing.T) {
	s, st, c := newServer(t, "sha256:aa")
	addUser(t, st, "tina", "tina-password-1", RoleNone)
	const n = 100
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		got   = map[string]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := s.Login("tina", "wrong-password", "10.0.0.1")
			var le *LockedError
			kind := ""
			switch {
			case tok != nil || err == nil:
				kind = "signed in"
			case errors.Is(err, ErrBadCredentials):
				kind = "bad credentials"
			case errors.As(err, &le):
				kind = "locked"
			case errors.Is(err, ErrRateLimited):
				kind = "rate limited"
			default:
				kind = "other error: " + err.Error()
			}
			mu.Lock()
			got[kind]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("answers: %v", got)
	for kind, k := range got {
		switch kind {
		case "bad credentials", "locked", "rate limited":
		default:
			t.Errorf("%d answers %q", k, kind)
		}
	}
	if got["bad credentials"] > s.cfg.MaxFailures {
		t.Errorf("%d wrong passwords were checked and refused; at most %d may be before the lock", got["bad credentials"], s.cfg.MaxFailures)
	}
	if passed := got["bad credentials"] + got["locked"]; passed > s.cfg.PerMinute {
		t.Errorf("%d attempts for one name passed the rate limit of %d a minute", passed, s.cfg.PerMinute)
	}
	if got["rate limited"] < n-s.cfg.PerMinute {
		t.Errorf("only %d of %d attempts were rate limited", got["rate limited"], n)
	}
	ev, err := st.Audit(store.AuditFilter{Actor: "tina", Action: "login"})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range ev {
		if strings.HasPrefix(e.Detail, "wrong password") {
			checked++
		}
	}
	if checked > s.cfg.MaxFailures {
		t.Errorf("%d failed password checks audited; at most %d may be made before the lock", checked, s.cfg.MaxFailures)
	}
	u, err := st.User("tina")
	if err != nil {
		t.Fatal(err)
	}
	if !c.now().Before(u.LockedUntil) {
		t.Errorf("account is not locked after %d failed sign-ins (locked until %v)", got["bad credentials"], u.LockedUntil)
	}
	// The right password, at once and after the rate limit's minute, is
	// refused while the account is locked.
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); err == nil {
		t.Error("the right password was accepted right after the attack")
	}
	c.add(2 * time.Minute)
	var le *LockedError
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); !errors.As(err, &le) {
		t.Errorf("right password on the locked account: %v, want locked", err)
	}
	// When the lock ends the right password works and resets the count.
	c.add(15 * time.Minute)
	if _, err := s.Login("tina", "tina-password-1", "10.0.0.1"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if u, err := st.User("tina"); err != nil || u.FailedLogins != 0 {
		t.Fatalf("after a sign-in: %+v, %v; want no failed sign-ins counted", u, err)
	}
}
