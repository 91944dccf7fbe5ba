package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// tokenContext separates token signatures from policy signatures.
const tokenContext = "outpost-token-v1\x00"

// TokenPrefix starts every encoded access token, so that one pasted in the
// wrong place is recognisable.
const TokenPrefix = "ott1."

// maxTokenLen bounds an encoded token before anything is decoded.
const maxTokenLen = 8192

// Errors a token is refused with.
var (
	ErrTokenMalformed  = errors.New("access token is malformed")
	ErrTokenUnknownKey = errors.New("access token is signed by a key this host does not know (another coordinator?)")
	ErrTokenSignature  = errors.New("access token signature does not verify")
	ErrTokenExpired    = errors.New("access token has expired: sign in again (outpost login)")
	// ErrTokenAudience is a token shown to a party it is not for: a
	// session token anywhere but its host, an access token at a host.
	ErrTokenAudience = errors.New("token is not meant for this party")
)

// SignToken encodes t, signs it and returns the printable token.
func SignToken(priv ed25519.PrivateKey, t *AccessToken) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode access token: %w", err)
	}
	st := &SignedToken{Token: b, Signature: ed25519.Sign(priv, append([]byte(tokenContext), b...)),
		KeyId: KeyID(priv.Public().(ed25519.PublicKey))}
	out, err := proto.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encode access token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

// VerifyToken checks an encoded token against the trusted keys (key id →
// public key) and its expiry at now, and returns what it carries. Nothing
// of the token is decoded before its signature verifies.
func VerifyToken(s string, keys map[string]ed25519.PublicKey, now time.Time) (*AccessToken, error) {
	if len(s) > maxTokenLen {
		return nil, ErrTokenMalformed
	}
	body, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return nil, ErrTokenMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, ErrTokenMalformed
	}
	var st SignedToken
	if err := Unmarshal(raw, &st); err != nil {
		return nil, ErrTokenMalformed
	}
	pub, ok := keys[st.GetKeyId()]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, ErrTokenUnknownKey
	}
	if !ed25519.Verify(pub, append([]byte(tokenContext), st.GetToken()...), st.GetSignature()) {
		return nil, ErrTokenSignature
	}
	var t AccessToken
	if err := Unmarshal(st.GetToken(), &t); err != nil {
		return nil, ErrTokenMalformed
	}
	if t.GetUser() == "" {
		return nil, ErrTokenMalformed
	}
	if now.UnixMilli() >= t.GetExpiresUnixMs() {
		return nil, ErrTokenExpired
	}
	return &t, nil
}

// Revoked says whether the list refuses t: its user is disabled, or the
// token was issued before the user's not-before time.
func (l *RevocationList) Revoked(t *AccessToken) bool {
	for _, r := range l.GetRevocations() {
		if r.GetUser() == t.GetUser() && (r.GetDisabled() || t.GetIssuedUnixMs() < r.GetNotBeforeUnixMs()) {
			return true
		}
	}
	return false
}

// ALPNTechnician is spoken by the outpost CLI for technician sessions: to
// the coordinator, which brokers them to agents, or straight to an agent.
const ALPNTechnician = "outpost-technician/1"

// revocationsContext separates revocation-list signatures from tokens and
// policy.
const revocationsContext = "outpost-revocations-v1\x00"

// maxRevocationsLen bounds a signed list before it is verified.
const maxRevocationsLen = 4 << 20

// Errors a signed revocation list is refused with. An unknown key is not
// proof of a forgery: the host's policy may not name the key yet.
var (
	ErrRevocationsSignature  = errors.New("revocation list signature does not verify")
	ErrRevocationsUnknownKey = errors.New("revocation list is signed by a key this host does not know")
)

// SignRevocations encodes l and signs it with the token key.
func SignRevocations(priv ed25519.PrivateKey, l *RevocationList) (*SignedRevocations, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("encode revocation list: %w", err)
	}
	return &SignedRevocations{List: b, Signature: ed25519.Sign(priv, append([]byte(revocationsContext), b...)),
		KeyId: KeyID(priv.Public().(ed25519.PublicKey))}, nil
}

// VerifyRevocations checks s against the trusted token keys (key id →
// public key) and returns the list it carries. Nothing is decoded before
// the signature verifies.
func VerifyRevocations(s *SignedRevocations, keys map[string]ed25519.PublicKey) (*RevocationList, error) {
	if s == nil || len(s.GetList()) == 0 || len(s.GetList()) > maxRevocationsLen {
		return nil, fmt.Errorf("revocation list is empty or larger than %d bytes", maxRevocationsLen)
	}
	pub, ok := keys[s.GetKeyId()]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: %w", s.GetKeyId(), ErrRevocationsUnknownKey)
	}
	if !ed25519.Verify(pub, append([]byte(revocationsContext), s.GetList()...), s.GetSignature()) {
		return nil, ErrRevocationsSignature
	}
	var l RevocationList
	if err := Unmarshal(s.GetList(), &l); err != nil {
		return nil, fmt.Errorf("decode revocation list: %w", err)
	}
	if l.GetIssuedUnixMs() <= 0 {
		return nil, errors.New("revocation list has no issue time")
	}
	return &l, nil
}
