package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/wire"
)

// revocationRequests is how many times hosts asked the coordinator for the
// revocation list.
func revocationRequests(t *testing.T, c *coordinatortest.Harness) float64 {
	t.Helper()
	mfs, err := c.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "outpost_coordinator_quic_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "revocations" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// Streams to a host's session_listen are unauthenticated until their
// token verifies; before each the host asks the coordinator for the
// revocation list (up to 4 MiB). Streams opened together share one
// request: anyone who reaches the listener cannot make hosts hammer the
// coordinator (16 streams of junk made 16 requests).
func TestDirectStreamsShareOneRevocationRequest(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	listen := freeUDPOn(t, "127.0.0.82")
	startAgent(t, c, c.EnrollToken("berlin", "agent", 1), "pc-direct-junk", "127.0.0.82", agent.WithSessionListen(listen, ""))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, listen, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPNTechnician}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	before := revocationRequests(t, c)
	var wg sync.WaitGroup
	for range 16 {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			str.Write([]byte("\x00\x00\x00\x05junk!"))
			str.Close()
			io.Copy(io.Discard, str) // the host's refusal, once it has judged the stream
		})
	}
	wg.Wait()
	if n := revocationRequests(t, c) - before; n > 2 {
		t.Fatalf("16 streams of junk made the host ask the coordinator for revocations %v times", n)
	}
}
