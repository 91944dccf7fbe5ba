package quicsrv

import (
	"context"
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A member an admin removed (outpost agent rm: a decommissioned or stolen
// computer that still runs its agent) keeps a certificate that passes the
// TLS handshake, and the coordinator closes the connection right after it.
// The member's link must back off like for any other failure; it redials
// at once instead, in a loop, and each round costs the coordinator a
// handshake, a store read and a Warn record — forever.
func TestRemovedMemberDoesNotRedialInATightLoop(t *testing.T) {
	s, st, logs := checkinServer(t)
	ctx := runOnLoopback(t, s)

	key, der := memberCert(t, s, "agent-1")
	id := &member.Identity{ID: "agent-1", Office: "berlin", Role: wire.Role_ROLE_AGENT}
	if err := id.SetCAs(s.ca.CertDER()); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	if _, err := st.DeleteMember("agent-1"); err != nil {
		t.Fatal(err)
	}
	memberLogs := &testutil.Logs{}
	c, err := member.NewClient(id, s.Addr().String(), func(context.Context, *wire.Request) *wire.Response { return nil }, slog.New(memberLogs))
	if err != nil {
		t.Fatal(err)
	}
	// The client's own defaults: 500 ms first backoff, doubling to 30 s.
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	_ = c.Run(cctx)

	refused := logs.count(slog.LevelWarn, "connection from unknown member refused")
	lost := memberLogs.Count(slog.LevelWarn, func(m string) bool { return m == "connection to coordinator lost" })
	t.Logf("in 3 s: coordinator refused %d connections (Warn each); member logged %d losses (Warn each)", refused, lost)
	// With the client's backoff (0.25-0.75 s, then doubling) 3 s hold at
	// most about 5 attempts.
	if refused > 6 {
		t.Fatalf("a removed member redialled %d times in 3 s: no backoff after a connection the coordinator closes at once "+
			"(about %d a day, each a Warn on both sides)", refused, refused*28800)
	}
}

// Two computers with one identity — a disk image cloned after the agent
// enrolled, a VM snapshot restored beside the original — are common in a
// fleet after a while. Each connection replaces the other's at the
// coordinator, and since the replaced member redials at once, with no
// backoff, the two take turns replacing each other as fast as handshakes
// go, for as long as both run.
func TestClonedMembersDoNotReplaceEachOtherInATightLoop(t *testing.T) {
	s, _, _ := checkinServer(t)
	ctx := runOnLoopback(t, s)

	key, der := memberCert(t, s, "agent-1")
	var logs [2]*testutil.Logs
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	clientDone := make(chan struct{}, 2)
	for i := range logs {
		id := &member.Identity{ID: "agent-1", Office: "berlin", Role: wire.Role_ROLE_AGENT}
		if err := id.SetCAs(s.ca.CertDER()); err != nil {
			t.Fatal(err)
		}
		id.SetCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
		logs[i] = &testutil.Logs{}
		c, err := member.NewClient(id, s.Addr().String(), func(context.Context, *wire.Request) *wire.Response { return nil }, slog.New(logs[i]))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.Run(cctx); clientDone <- struct{}{} }()
	}
	<-clientDone
	<-clientDone
	connected := 0
	for _, l := range logs {
		connected += l.Count(slog.LevelInfo, func(m string) bool { return m == "connected to coordinator" })
	}
	t.Logf("two clones of one member connected %d times in 3 s", connected)
	if connected > 12 {
		t.Fatalf("two members with one identity replaced each other %d times in 3 s: no backoff after a connection the coordinator replaced", connected)
	}
}
