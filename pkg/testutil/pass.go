package testutil

import (
	"crypto/ed25519"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// MemberPass is what the coordinator gives a member for its office's
// gossip: a fresh gossip key, and a pass for it signed with priv (the
// policy key), encoded as the member announces it. It panics on a name
// that is not a member id.
func MemberPass(priv ed25519.PrivateKey, name string, role wire.Role) (ed25519.PrivateKey, []byte) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	sp, err := wire.SignPass(priv, &wire.MemberPass{MemberId: name, Role: role, GossipKey: pub, NotAfterUnix: wire.PassExpiry(time.Now()).Unix()})
	if err != nil {
		panic(err)
	}
	b, err := wire.EncodePass(sp)
	if err != nil {
		panic(err)
	}
	return key, b
}
