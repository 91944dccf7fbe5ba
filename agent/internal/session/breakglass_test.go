package session

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

func phc(password string) string {
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte(password), salt, 1, 1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=1024,t=1,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum))
}

func TestBreakGlass(t *testing.T) {
	f := newFixture(t)
	exec := func(user, pw string) *result {
		_, res := f.open(t, &wire.SessionOpen{LocalUser: user, LocalPassword: pw, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "glass"}})
		return wait(t, res, 10*time.Second)
	}
	if r := exec("tina", "glass-password"); !strings.Contains(r.end.GetError(), "break-glass sign-in is off") {
		t.Fatalf("off by default: %v", r.end)
	}
	f.s.cfg.BreakGlassHash = phc("glass-password")
	f.s.policy.(fixedPolicy).p.ForceServerSecurityUsers = []string{"tom"}
	if r := exec("tom", "glass-password"); !strings.Contains(r.end.GetError(), "force server security") {
		t.Fatalf("force-server-security user: %v", r.end)
	}
	if r := exec("tina", "glass-password"); r.end.GetError() != "" || r.stdout.String() != "glass\n" {
		t.Fatalf("break-glass: %v %q", r.end, r.stdout.String())
	}
	for range 5 {
		if r := exec("tina", "wrong"); !strings.Contains(r.end.GetError(), "wrong") {
			t.Fatalf("wrong password: %v", r.end)
		}
	}
	if r := exec("tina", "glass-password"); !strings.Contains(r.end.GetError(), "too many") {
		t.Fatalf("after 5 failures: %v", r.end)
	}
	// The lock-out is of the address that failed: another still gets in.
	ctx := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("10.0.0.9"), Port: 4242})
	_, res := f.openCtx(t, ctx, &wire.SessionOpen{LocalUser: "tina", LocalPassword: "glass-password", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "glass"}})
	if r := wait(t, res, 10*time.Second); r.end.GetError() != "" || r.stdout.String() != "glass\n" {
		t.Fatalf("another address after one was locked out: %v", r.end)
	}
	// A user the coordinator disabled is refused by name.
	if err := f.s.SetRevocations(f.revocations(t, time.Now().UnixMilli(), &wire.Revocation{User: "mallory", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	_, res = f.openCtx(t, ctx, &wire.SessionOpen{LocalUser: "mallory", LocalPassword: "glass-password", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "glass"}})
	if r := wait(t, res, 10*time.Second); !strings.Contains(r.end.GetError(), "mallory is disabled") {
		t.Fatalf("a disabled user's break-glass: %v", r.end)
	}
	var allowed, refusedAsTina, fromAddr bool
	for _, rec := range f.s.PendingAudit() {
		allowed = allowed || (rec.GetUser() == "local:tina" && rec.GetAllowed())
		refusedAsTina = refusedAsTina || (rec.GetUser() == "local:tina" && !rec.GetAllowed() && strings.Contains(rec.GetDetail(), "wrong"))
		fromAddr = fromAddr || strings.Contains(rec.GetDetail(), "(from 10.0.0.9)")
	}
	if !allowed || !refusedAsTina || !fromAddr {
		t.Fatalf("audit: allowed as local:tina %v, refusals as local:tina %v, the address %v: %v", allowed, refusedAsTina, fromAddr, f.s.PendingAudit())
	}
}

func TestVerifyArgon2idRefusesDamage(t *testing.T) {
	h := phc("pw-1234567890")
	if !verifyArgon2id(h, "pw-1234567890") || verifyArgon2id(h, "pw-1234567891") {
		t.Fatal("verify")
	}
	// As many passes as the coordinator's password_kdf allows (64): a hash
	// made with them, by outpost hash-password or another tool, verifies.
	salt := []byte("0123456789abcdef")
	sum := argon2.IDKey([]byte("pw-1234567890"), salt, 20, 64, 1, 32)
	slow := fmt.Sprintf("$argon2id$v=%d$m=64,t=20,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum))
	if !verifyArgon2id(slow, "pw-1234567890") {
		t.Fatal("a hash of 20 passes is refused")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1024,t=1,p=1$AA$AA", strings.Replace(h, "t=1", "t=99", 1), "$argon2id$v=19$m=1024,t=1,p=1$!$!"} {
		if verifyArgon2id(bad, "pw-1234567890") {
			t.Fatalf("accepted %q", bad)
		}
	}
}

// Attempts at once cannot all pass the limit before any failure counts:
// fifty wrong passwords together get five checks, and nothing more.
func TestBreakGlassLimitHoldsUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	f.s.cfg.BreakGlassHash = phc("glass-password")
	ctx := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("10.0.0.7"), Port: 1})
	var wg sync.WaitGroup
	results := make(chan string, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, res := f.openCtx(t, ctx, &wire.SessionOpen{LocalUser: "tina", LocalPassword: "wrong", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/true"}})
			results <- wait(t, res, 30*time.Second).end.GetError()
		}()
	}
	wg.Wait()
	close(results)
	checked := 0
	for e := range results {
		switch {
		case strings.Contains(e, "wrong"):
			checked++
		case strings.Contains(e, "too many"):
		default:
			t.Errorf("unexpected answer %q", e)
		}
	}
	if checked > breakGlassFailures {
		t.Fatalf("%d wrong passwords were checked at once, want at most %d", checked, breakGlassFailures)
	}
}

// Break-glass refuses users marked force server security, and users the
// coordinator disabled, by the name typed. The coordinator's names are
// lower case ([a-z0-9][a-z0-9._-]*), and "Tom", "tom " or "tom\t" would be
// the same person to every reader of the audit: break-glass takes names of
// that form only, so no other spelling passes those checks.
func TestBreakGlassNameVariantsDoNotBypassRefusals(t *testing.T) {
	f := newFixture(t)
	f.s.cfg.BreakGlassHash = phc("glass-password")
	f.p.ForceServerSecurityUsers = []string{"tom"}
	if err := f.s.SetRevocations(f.revocations(t, time.Now().UnixMilli(), &wire.Revocation{User: "mallory", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Tom", "tom ", "TOM", "Mallory", "mallory\t"} {
		_, res := f.open(t, &wire.SessionOpen{LocalUser: name, LocalPassword: "glass-password", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "in"}})
		r := wait(t, res, 10*time.Second)
		if !r.end.GetDenied() {
			t.Errorf("break-glass as %q: accepted (stdout %q, audited as %q); want refused like %q", name, r.stdout.String(), "local:"+name, strings.ToLower(strings.TrimSpace(name)))
		}
	}
}

// Break-glass refuses a user the coordinator disabled; a break-glass
// session already running as that user ends when the revocation list that
// disables them arrives ("disabling a user ... ends that user's live
// sessions"): the list's "tina" is the session's "local:tina".
func TestDisablingAUserEndsTheirBreakGlassSession(t *testing.T) {
	f := newFixture(t)
	f.s.cfg.BreakGlassHash = phc("glass-password")
	_, res := f.open(t, &wire.SessionOpen{LocalUser: "tina", LocalPassword: "glass-password", Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/bin/sh", "-c", "exec sleep 60"}})
	testutil.Eventually(t, 10*time.Second, func() bool { return f.s.Live() == 1 }, "the break-glass session did not start")
	if err := f.s.SetRevocations(f.revocations(t, time.Now().UnixMilli(), &wire.Revocation{User: "tina", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if !r.end.GetRevoked() {
			t.Fatalf("end %v, want ended by the revocation", r.end)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("tina's break-glass session still runs 3 s after the coordinator disabled tina")
	}
}

// A user the coordinator comes to hold to force server security loses a
// break-glass session already running, as soon as the host takes the
// policy that says so.
func TestForceServerSecurityEndsABreakGlassSession(t *testing.T) {
	f := newFixture(t)
	f.s.cfg.BreakGlassHash = phc("glass-password")
	_, res := f.open(t, &wire.SessionOpen{LocalUser: "tina", LocalPassword: "glass-password", Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/bin/sh", "-c", "exec sleep 60"}})
	testutil.Eventually(t, 10*time.Second, func() bool { return f.s.Live() == 1 }, "the break-glass session did not start")
	f.p.ForceServerSecurityUsers = []string{"tom"}
	f.s.Recheck()
	if f.s.Live() != 1 {
		t.Fatal("another user's force server security ended tina's session")
	}
	f.p.ForceServerSecurityUsers = []string{"tom", "tina"}
	f.s.Recheck()
	r := wait(t, res, 5*time.Second)
	if !r.end.GetRevoked() || !strings.Contains(r.end.GetError(), "must sign in on the coordinator") {
		t.Fatalf("end %v, want ended: tina must now sign in on the coordinator", r.end)
	}
}
