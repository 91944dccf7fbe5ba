package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/wire"
)

// One connection carries a member's requests for as long as it stays up:
// far more of them than the streams the coordinator lets be open at once
// (64), so every request's stream must be released on both sides when it
// is answered. A stream whose end was never read stayed counted, and the
// 65th request on a connection waited for good.
func TestLinkCarriesManyRequests(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("busy", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := member.LoadOrEnroll(ctx, t.TempDir(), c.QUIC, c.CA, c.EnrollToken("busy", "agent", 1), "pc-busy", wire.Role_ROLE_AGENT, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	link, err := member.NewClient(id, c.QUIC, func(context.Context, *wire.Request) *wire.Response { return nil }, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	const n = 300
	for i := range n {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := link.Call(cctx, &wire.Request{Body: &wire.Request_RevocationsRequest{RevocationsRequest: &wire.RevocationsRequest{}}})
		ccancel()
		if err != nil {
			t.Fatalf("request %d of %d on one connection: %v", i+1, n, err)
		}
	}
}
