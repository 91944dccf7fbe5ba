package session

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/outposthq/outpost/pkg/wire"
)

// Break-glass: a host-local password for when the coordinator is gone.
// It is off unless the host is configured with its Argon2id hash, and a
// user the coordinator marked "force server security" cannot use it.

const (
	breakGlassFailures = 5
	breakGlassWindow   = time.Minute
)

func (s *Server) breakGlass(open *wire.SessionOpen) (*wire.AccessToken, Rights, error) {
	user := open.GetLocalUser()
	if s.cfg.BreakGlassHash == "" {
		return nil, nil, deny("break-glass sign-in is off on this host: sign in on the coordinator (outpost login)")
	}
	if p := s.policy.Policy(); p != nil && slices.Contains(p.GetForceServerSecurityUsers(), user) {
		return nil, nil, deny("%s must sign in on the coordinator (force server security): break-glass is not for this user", user)
	}
	now := s.now()
	s.mu.Lock()
	recent := s.glassFailures[:0]
	for _, t := range s.glassFailures {
		if now.Sub(t) < breakGlassWindow {
			recent = append(recent, t)
		}
	}
	s.glassFailures = recent
	limited := len(recent) >= breakGlassFailures
	s.mu.Unlock()
	if limited {
		return nil, nil, deny("too many failed break-glass attempts on this host: wait a minute")
	}
	if !verifyArgon2id(s.cfg.BreakGlassHash, open.GetLocalPassword()) {
		s.mu.Lock()
		s.glassFailures = append(s.glassFailures, now)
		s.mu.Unlock()
		return nil, nil, deny("break-glass password is wrong")
	}
	at := &wire.AccessToken{User: "local:" + user, IssuedUnixMs: now.UnixMilli()}
	rights := Rights{}
	for _, r := range []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_CONTROL, wire.Right_RIGHT_COMMAND, wire.Right_RIGHT_FILES, wire.Right_RIGHT_MANAGE} {
		rights[r] = true
	}
	return at, rights, nil
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
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || t == 0 || t > 16 || m < 8 || m > 4<<20 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want))), want) == 1
}
