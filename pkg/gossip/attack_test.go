package gossip

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// What an office key holder can put on the wire: memberlist's own
// messages, encrypted with the office key, built by hand (the field names
// are memberlist's, which is how msgpack encodes them).
type forgedAlive struct {
	Incarnation uint32
	Node        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Vsn         []uint8
}

type forgedDead struct {
	Incarnation uint32
	Node        string
	From        string
}

// memberlist's message types (net.go).
const (
	mlAliveMsg = 4
	mlDeadMsg  = 5
)

// forge encodes one memberlist message and encrypts it with the office key
// as memberlist does (encryption version 1, no label).
func forge(t *testing.T, officeKey []byte, typ byte, body any) []byte {
	t.Helper()
	var plain bytes.Buffer
	plain.WriteByte(typ)
	if err := codec.NewEncoder(&plain, &codec.MsgpackHandle{}).Encode(body); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(officeKey)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	out := append([]byte{1}, nonce...)
	return gcm.Seal(out, nonce, plain.Bytes(), nil)
}

// sendForged sends a forged packet from the attacker's host to a member's
// gossip address.
func sendForged(t *testing.T, to string, pkt []byte) {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.170")}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
}

func hostPort(t *testing.T, addr string) (net.IP, uint16) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	return net.ParseIP(h).To4(), uint16(port)
}

func peerOf(n *Node, name string) (Peer, bool) {
	for _, p := range n.Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// within polls cond for d.
func within(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

func officeKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// An office key holder without a pass repeats one of ag-rx's old
// announcements (roll-up on, another content port), which it saw go by,
// with memberlist's incarnation set to 2^32-1. Taken, ag-rx could not
// refute it (its incarnation would wrap to 0, and everything it announced
// after would be older than what the others hold). An announcement
// carries a sequence the signature covers, and one older than a member's
// newest is refused: the others keep following ag-rx.
func TestOldAnnouncementReplayedAtTheTopIncarnationIsRefused(t *testing.T) {
	replayOldAnnouncement(t, math.MaxUint32, "127.0.0.150", "127.0.0.151")
}

// The same replay at an ordinary incarnation.
func TestOldAnnouncementReplayedIsRefused(t *testing.T) {
	replayOldAnnouncement(t, 1000, "127.0.0.158", "127.0.0.159")
}

func replayOldAnnouncement(t *testing.T, inc uint32, ipA, ipX string) {
	key := officeKey()
	a := run(t, member(Config{Name: "ag-ra", Bind: ipA + ":0", Keys: [][]byte{key}}))
	x := run(t, member(Config{Name: "ag-rx", Bind: ipX + ":0", Keys: [][]byte{key}}))
	if _, err := x.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	x.SetHoldings(7000, nil)
	x.SetRollup(true)
	if !within(10*time.Second, func() bool {
		p, ok := peerOf(a, "ag-rx")
		return ok && p.Meta.Rollup && p.Meta.ContentPort == 7000
	}) {
		t.Fatal("ag-ra never listed ag-rx with roll-up on")
	}
	// What ag-rx announced then, as everyone in the office saw it.
	old := delegate{x}.NodeMeta(memberlist.MetaMaxSize)
	x.SetRollup(false)
	x.SetHoldings(7001, nil)
	if !within(10*time.Second, func() bool {
		p, ok := peerOf(a, "ag-rx")
		return ok && !p.Meta.Rollup && p.Meta.ContentPort == 7001
	}) {
		t.Fatal("ag-ra never saw ag-rx turn roll-up off")
	}

	ip, port := hostPort(t, x.Addr())
	vsn := memberlist.DefaultLocalConfig().BuildVsnArray()
	sendForged(t, a.Addr(), forge(t, key, mlAliveMsg, forgedAlive{
		Incarnation: inc, Node: "ag-rx", Addr: ip, Port: port, Meta: old, Vsn: vsn}))
	time.Sleep(time.Second)
	// ag-rx goes on announcing what it really does.
	x.SetHoldings(7002, nil)
	if !within(8*time.Second, func() bool {
		p, ok := peerOf(a, "ag-rx")
		return ok && !p.Meta.Rollup && p.Meta.ContentPort == 7002
	}) {
		p, _ := peerOf(a, "ag-rx")
		t.Fatalf("ag-ra lists ag-rx with roll-up=%v content port %d (a replayed old announcement); ag-rx announces roll-up=false content port 7002",
			p.Meta.Rollup, p.Meta.ContentPort)
	}
}

// An office key holder declares a live member dead: the member refutes it
// and is listed again within moments. (At incarnation 2^32-1 it could not:
// memberlist's dead and suspect messages reach no delegate, and the
// refutation's incarnation wraps. An office key holder can so keep a
// member unlisted, 15 to 30 s a packet: README, "Who is in an office's
// gossip".)
func TestForgedDeathOfALiveMemberIsRefuted(t *testing.T) {
	forgedDeath(t, 1000, "127.0.0.160", "127.0.0.161")
}

func forgedDeath(t *testing.T, inc uint32, ipA, ipX string) {
	key := officeKey()
	a := run(t, member(Config{Name: "ag-da", Bind: ipA + ":0", Keys: [][]byte{key}}))
	x := run(t, member(Config{Name: "ag-dx", Bind: ipX + ":0", Keys: [][]byte{key}}))
	if _, err := x.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if !within(10*time.Second, func() bool { return a.Lists("ag-dx") && x.Lists("ag-da") }) {
		t.Fatal("the office did not form")
	}
	sendForged(t, a.Addr(), forge(t, key, mlDeadMsg, forgedDead{Incarnation: inc, Node: "ag-dx", From: "ag-nobody"}))
	time.Sleep(500 * time.Millisecond)
	// ag-dx is alive and answers all along: a false accusation is
	// refuted within moments.
	if !within(8*time.Second, func() bool { return a.Lists("ag-dx") }) {
		t.Fatal("ag-da dropped live ag-dx on the word of an office key holder without a pass, and still does not list it 8 s later")
	}
}

// memberlist keeps a member alive as long as it answers probes, and the
// Alive delegate sees only its new announcements: a member whose pass
// ended (cut off from the coordinator for months, deleted while its
// office key was not rotated yet) would stay listed, with what it
// announced last, for good. Peers whose pass ended are dropped.
func TestMemberWhosePassEndsIsNoLongerListed(t *testing.T) {
	key := officeKey()
	a := run(t, member(Config{Name: "ag-ea", Bind: "127.0.0.154:0", Keys: [][]byte{key}}))
	pub, signer, _ := ed25519.GenerateKey(nil)
	ends := time.Now().Add(-wire.PassGrace + 6*time.Second)
	sp, err := wire.SignPass(passPriv, &wire.MemberPass{MemberId: "ag-ex", Role: wire.Role_ROLE_RELAY, GossipKey: pub, NotAfterUnix: ends.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := wire.EncodePass(sp)
	x := run(t, Config{Name: "ag-ex", Bind: "127.0.0.155:0", Keys: [][]byte{key}, PassKey: passKey, Signer: signer, Pass: pass})
	if _, err := x.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if !within(4*time.Second, func() bool { return a.Lists("ag-ex") }) {
		t.Fatal("ag-ex with a good pass was not listed")
	}
	// The pass ends (its day's grace included); ag-ex announces something new.
	time.Sleep(time.Until(time.Unix(ends.Unix(), 0).Add(wire.PassGrace)) + 2*time.Second)
	x.SetRollup(true)
	if within(6*time.Second, func() bool { return !a.Lists("ag-ex") }) {
		return
	}
	p, _ := peerOf(a, "ag-ex")
	t.Fatalf("ag-ea still lists ag-ex as a %s %v after its pass ended (a new verifier refuses it: %v)",
		p.Meta.Role, time.Since(time.Unix(ends.Unix(), 0).Add(wire.PassGrace)).Round(time.Second), newlyVerified(x))
}

func newlyVerified(x *Node) error {
	x.mu.Lock()
	ip, port := x.selfIP, x.selfPort
	x.mu.Unlock()
	_, err := newVerifier(passKey).verify(x.Name(), ip, port, delegate{x}.NodeMeta(memberlist.MetaMaxSize))
	return err
}

// The same at the verifier: once a member's newer announcement verified,
// an older one of it is refused, until the member leaves (one restarted
// with its clock set back starts afresh).
func TestVerifierRefusesAnOlderAnnouncementUntilTheMemberLeaves(t *testing.T) {
	key, pass := testutil.MemberPass(passPriv, "ag-1", wire.Role_ROLE_AGENT)
	older := announceAt(1, key, "ag-1", pass, Meta{Rollup: true, ContentPort: 7000})
	newer := announceAt(2, key, "ag-1", pass, Meta{Rollup: false, ContentPort: 7001})
	v := newVerifier(passKey)
	for _, b := range [][]byte{older, newer} {
		if _, err := v.verify("ag-1", hereIP, herePort, b); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := v.verify("ag-1", hereIP, herePort, older); err == nil {
		t.Fatalf("after ag-1 announced roll-up off, its older announcement is taken back: %+v", m)
	}
	v.forget("ag-1")
	if _, err := v.verify("ag-1", hereIP, herePort, older); err != nil {
		t.Fatalf("after ag-1 left: %v", err)
	}
}
