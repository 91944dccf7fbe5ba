package wire

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// passContext separates member passes from anything else the policy key
// signs.
const passContext = "outpost-member-pass-v1\x00"

// MaxPass bounds an encoded SignedMemberPass: a real one is about 140
// bytes, and it must fit in a gossip announcement (512 bytes in all).
const MaxPass = 200

// PassLifetime is how long a pass is good for, and PassRenewBefore how long
// before its end a member asks for a new one: a member whose office has
// lost its WAN link stays listed by its peers for at least that long.
const (
	PassLifetime    = 90 * 24 * time.Hour
	PassRenewBefore = 60 * 24 * time.Hour
)

// MemberCertRenewBefore is how long before its member certificate ends
// a member asks for a new one (certificates last a year): a member that
// is offline for that long at the wrong moment must enrol again.
const MemberCertRenewBefore = 120 * 24 * time.Hour

// PassExpiry is the end of a pass issued at now: PassLifetime later,
// rounded down to the day, so that a member's pass, and with it what it
// announces to its office, changes at most once a day.
func PassExpiry(now time.Time) time.Time {
	return now.Add(PassLifetime).UTC().Truncate(24 * time.Hour)
}

// SignPass signs a member pass with the policy key.
func SignPass(priv ed25519.PrivateKey, p *MemberPass) (*SignedMemberPass, error) {
	if err := checkPass(p); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode member pass: %w", err)
	}
	return &SignedMemberPass{Pass: b, Signature: ed25519.Sign(priv, append([]byte(passContext), b...))}, nil
}

// EncodePass encodes a signed pass as it travels in gossip.
func EncodePass(sp *SignedMemberPass) ([]byte, error) {
	if sp == nil {
		return nil, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("encode member pass: %w", err)
	}
	return b, nil
}

// DecodePass reads an encoded SignedMemberPass without checking it.
func DecodePass(b []byte) (*SignedMemberPass, error) {
	if len(b) > MaxPass {
		return nil, fmt.Errorf("member pass of %d bytes (at most %d)", len(b), MaxPass)
	}
	var sp SignedMemberPass
	if err := Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("decode member pass: %w", err)
	}
	return &sp, nil
}

// ErrPassExpired is returned by VerifyPass for a pass past its end.
var ErrPassExpired = errors.New("member pass has expired")

// VerifyPass checks an encoded SignedMemberPass against the policy key and
// returns the pass it carries. It decodes nothing of the pass before the
// signature verifies. A pass is refused from a day after its end: clocks
// of laptops are not all right.
func VerifyPass(pub ed25519.PublicKey, b []byte, now time.Time) (*MemberPass, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify member pass: pinned key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	sp, err := DecodePass(b)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(pub, append([]byte(passContext), sp.GetPass()...), sp.GetSignature()) {
		return nil, fmt.Errorf("verify member pass: %w", ErrBadSignature)
	}
	var p MemberPass
	if err := Unmarshal(sp.GetPass(), &p); err != nil {
		return nil, fmt.Errorf("decode member pass: %w", err)
	}
	if err := checkPass(&p); err != nil {
		return nil, err
	}
	if now.After(time.Unix(p.GetNotAfterUnix(), 0).Add(PassGrace)) {
		return nil, fmt.Errorf("member pass of %s ended %s: %w", p.GetMemberId(), time.Unix(p.GetNotAfterUnix(), 0).UTC().Format(time.DateOnly), ErrPassExpired)
	}
	return &p, nil
}

// PassGrace is how long past its end a pass is still taken: clocks of
// laptops are not all right.
const PassGrace = 24 * time.Hour

func checkPass(p *MemberPass) error {
	switch {
	case p == nil:
		return errors.New("member pass: none")
	case !MemberIDShaped(p.GetMemberId()):
		return fmt.Errorf("member pass: %q is not a member id", clip(p.GetMemberId()))
	case p.GetRole() != Role_ROLE_AGENT && p.GetRole() != Role_ROLE_RELAY:
		return fmt.Errorf("member pass: role %d", p.GetRole())
	case len(p.GetGossipKey()) != ed25519.PublicKeySize:
		return fmt.Errorf("member pass: gossip key of %d bytes", len(p.GetGossipKey()))
	case p.GetNotAfterUnix() <= 0:
		return errors.New("member pass: no end")
	}
	return nil
}

// MaxMemberID bounds a member id: the coordinator's are "ag-" or "rl-"
// and 16 hex digits.
const MaxMemberID = 64

// MemberIDShaped tells whether s could be a member id: a few dozen
// characters of the coordinator's ids (lower-case letters, digits and
// dashes).
func MemberIDShaped(s string) bool {
	if s == "" || len(s) > MaxMemberID {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > MaxMemberID {
		return s[:MaxMemberID] + "..."
	}
	return s
}

// RoleName is "agent" or "relay", as the coordinator's store and gossip
// name roles; "" for anything else.
func RoleName(r Role) string {
	switch r {
	case Role_ROLE_AGENT:
		return "agent"
	case Role_ROLE_RELAY:
		return "relay"
	}
	return ""
}

// RoleNamed is the role RoleName calls name; ROLE_UNSPECIFIED for any
// other name.
func RoleNamed(name string) Role {
	switch name {
	case "agent":
		return Role_ROLE_AGENT
	case "relay":
		return Role_ROLE_RELAY
	}
	return Role_ROLE_UNSPECIFIED
}
