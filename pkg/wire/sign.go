package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// signingContext separates policy signatures from anything else the same key
// might ever sign.
const signingContext = "outpost-policy-v1\x00"

// ErrBadSignature is returned for a policy that was not signed by the pinned key.
var ErrBadSignature = errors.New("policy signature does not verify")

// KeyID names a policy public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// SignPolicy encodes p and signs the encoding.
func SignPolicy(priv ed25519.PrivateKey, p *Policy) (*SignedPolicy, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	msg := append([]byte(signingContext), b...)
	return &SignedPolicy{
		Policy:    b,
		Signature: ed25519.Sign(priv, msg),
		KeyId:     KeyID(priv.Public().(ed25519.PublicKey)),
	}, nil
}

// VerifyPolicy checks sp against the pinned key and returns the policy it
// carries. It decodes nothing before the signature verifies.
func VerifyPolicy(pub ed25519.PublicKey, sp *SignedPolicy) (*Policy, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify policy: pinned key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if sp == nil || len(sp.GetPolicy()) == 0 {
		return nil, fmt.Errorf("verify policy: empty")
	}
	msg := append([]byte(signingContext), sp.GetPolicy()...)
	if !ed25519.Verify(pub, msg, sp.GetSignature()) {
		return nil, fmt.Errorf("verify policy (key %s, signed by %q): %w", KeyID(pub), sp.GetKeyId(), ErrBadSignature)
	}
	var p Policy
	if err := Unmarshal(sp.GetPolicy(), &p); err != nil {
		return nil, fmt.Errorf("decode signed policy: %w", err)
	}
	if p.GetRevision() == 0 {
		return nil, fmt.Errorf("verify policy: revision 0 is never issued")
	}
	return &p, nil
}
