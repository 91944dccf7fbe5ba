package auth

import (
	"errors"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// SessionTokenTTL bounds a session token's life: it is spent at once, on
// opening the session it was signed for.
const SessionTokenTTL = 2 * time.Minute

// ErrNoSessionToken is a principal without an access token of its own
// (the bootstrap admin token), which opens no sessions.
var ErrNoSessionToken = errors.New("sessions need a user's sign-in (outpost login), not the admin token")

// SessionToken signs a token that only the host with member id memberID
// takes, for the user of p's access token: the same user, groups, sign-in
// time and force_server_security, so the host's permission lists and
// revocation list judge it as they would the access token, but expiring
// within SessionTokenTTL and never after the access token. Hosts take
// nothing else, and Verify refuses it, so a host that receives it (a
// session's first message) can neither present it to the coordinator nor
// to another host.
func (s *Server) SessionToken(p *Principal, memberID string) (string, time.Time, error) {
	if p == nil || p.Token == nil {
		return "", time.Time{}, ErrNoSessionToken
	}
	at := p.Token
	exp := s.now().Add(SessionTokenTTL)
	if t := time.UnixMilli(at.GetExpiresUnixMs()); t.Before(exp) {
		exp = t
	}
	st := &wire.AccessToken{Issuer: at.GetIssuer(), User: at.GetUser(), Groups: at.GetGroups(),
		IssuedUnixMs: at.GetIssuedUnixMs(), ExpiresUnixMs: exp.UnixMilli(), TokenId: randomID(8),
		ForceServerSecurity: at.GetForceServerSecurity(), Audience: memberID}
	tok, err := wire.SignToken(s.key, st)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, exp.UTC(), nil
}
