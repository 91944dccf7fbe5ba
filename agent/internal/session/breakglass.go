package session

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/wire"
)

// Break-glass: a host-local password for when the coordinator is gone.
// It is off unless the host is configured with its Argon2id hash, and a
// user the coordinator marked "force server security" cannot use it.

const (
	// breakGlassFailures a minute lock one address out; breakGlassAll, from
	// every address together, the host (against guessing from many).
	breakGlassFailures = 5
	breakGlassAll      = 50
	breakGlassWindow   = time.Minute
)

// breakGlass checks a host-local sign-in. Failures are counted by the
// technician's address, so one address cannot lock everyone out, and in
// all, so that many addresses cannot guess freely. The name is the
// technician's word, kept for the audit trail; a user the coordinator
// disabled, or marked force server security, is refused by it. It must
// be a name of the coordinator's form, so that no other spelling of a
// refused user ("Tom", "tom ") passes those checks or names them in the
// audit trail.
func (s *Server) breakGlass(open *wire.SessionOpen, remote string) (*wire.AccessToken, Rights, error) {
	user := open.GetLocalUser()
	if s.cfg.BreakGlassHash == "" {
		return nil, nil, deny("break-glass sign-in is off on this host: sign in on the coordinator (outpost login)")
	}
	if !safetext.ValidUserName(user) {
		return nil, nil, deny("%q is not a user name: break-glass takes your name on the coordinator (lower case letters, digits, '.', '_' and '-')", safetext.Clip(user, 64))
	}
	if p := s.policy.Policy(); p != nil && slices.Contains(p.GetForceServerSecurityUsers(), user) {
		return nil, nil, deny("%s must sign in on the coordinator (force server security): break-glass is not for this user", user)
	}
	now := s.now()
	s.mu.Lock()
	// Disabled users only: a sign-in with a new password on the
	// coordinator (which ends the tokens issued before it) says nothing
	// of the host's break-glass password. Issued "at the end of time", no
	// such line of the list applies.
	if s.revs.Revoked(&wire.AccessToken{User: user, IssuedUnixMs: math.MaxInt64}) {
		s.mu.Unlock()
		return nil, nil, deny("%s is disabled on the coordinator: break-glass is not for this user", user)
	}
	all := 0
	for addr, times := range s.glassFailures {
		recent := times[:0]
		for _, t := range times {
			if now.Sub(t) < breakGlassWindow {
				recent = append(recent, t)
			}
		}
		if len(recent) == 0 {
			delete(s.glassFailures, addr)
			continue
		}
		s.glassFailures[addr] = recent
		all += len(recent)
	}
	src := glassSource(remote)
	if len(s.glassFailures[src]) >= breakGlassFailures || all >= breakGlassAll {
		s.mu.Unlock()
		return nil, nil, deny("too many failed break-glass attempts on this host: wait a minute")
	}
	// The attempt counts as a failure from now, in the step that checked
	// the limits, so that attempts at once cannot all pass them; a right
	// password gives it back.
	if s.glassFailures == nil {
		s.glassFailures = map[string][]time.Time{}
	}
	s.glassFailures[src] = append(s.glassFailures[src], now)
	s.mu.Unlock()
	// One Argon2id check at a time: each takes the hash's memory (64 MiB by
	// default), and a host must not be made to hold hundreds at once.
	s.glassCheck.Lock()
	ok := verifyArgon2id(s.cfg.BreakGlassHash, open.GetLocalPassword())
	s.glassCheck.Unlock()
	if !ok {
		return nil, nil, deny("break-glass password is wrong")
	}
	s.mu.Lock()
	if times := s.glassFailures[src]; len(times) > 0 {
		if i := slices.Index(times, now); i >= 0 {
			s.glassFailures[src] = slices.Delete(times, i, i+1)
		}
	}
	s.mu.Unlock()
	at := &wire.AccessToken{User: "local:" + user, IssuedUnixMs: now.UnixMilli()}
	rights := Rights{}
	for _, r := range []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_CONTROL, wire.Right_RIGHT_COMMAND, wire.Right_RIGHT_FILES, wire.Right_RIGHT_MANAGE} {
		rights[r] = true
	}
	return at, rights, nil
}

// glassSource is what break-glass failures are counted by: the address,
// or for IPv6 its /64, which one machine may hold whole.
func glassSource(remote string) string {
	a, err := netip.ParseAddr(remote)
	if err != nil || !a.Is6() || a.Is4In6() {
		return remote
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// verifyArgon2id checks a password against a PHC-style Argon2id string
// ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"), as outpost hash-password
// prints it.
func verifyArgon2id(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) || len(password) > 1024 {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || t == 0 || t > 64 || m < 8 || m > 4<<20 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want))), want) == 1
}
