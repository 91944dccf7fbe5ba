package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Twenty computers imaged at once enrol in the same second: each learns
// from the coordinator only the few members heard from last, so they may
// first find each other in small groups. The groups must still become one
// office, from the seeds the next check-ins bring.
func TestOfficeFormsWhenItsMembersEnrolAtOnce(t *testing.T) {
	const n = 20
	c := coordinatortest.New(t)
	c.CreateOffice("herd", map[string]any{"checkin_interval": "5s"})
	token := c.EnrollToken("herd", "agent", n)
	agents := startAgentsAtOnce(n, func(i int) *testAgent {
		return startAgent(t, c, token, fmt.Sprintf("herd-%02d", i), fmt.Sprintf("127.0.5.%d", 10+i))
	})
	start := time.Now()
	tu.Eventually(t, 2*time.Minute, func() bool {
		for _, a := range agents {
			if len(a.a.GossipPeers()) != n-1 {
				return false
			}
		}
		return true
	}, "the office's gossip did not form: peers seen %v", peerCounts(agents))
	t.Logf("%d members enrolled at once; one office %v after the last had started", n, time.Since(start).Round(time.Millisecond))
}

// peerCounts shows how many peers each agent sees, when it is printed.
type peerCounts []*testAgent

func (p peerCounts) String() string {
	out := make([]int, 0, len(p))
	for _, a := range p {
		out = append(out, len(a.a.GossipPeers()))
	}
	return fmt.Sprint(out)
}

// startAgentsAtOnce starts n agents side by side (start(i) starts the
// i-th), as computers imaged together come up, and returns them in order.
func startAgentsAtOnce(n int, start func(i int) *testAgent) []*testAgent {
	agents := make([]*testAgent, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agents[i] = start(i)
		}()
	}
	wg.Wait()
	return agents
}

// An address that holds as many enrolment connections as the coordinator
// takes from one source (a flood, or a very large office behind one NAT
// on its first morning): the next computer to enrol from it is refused
// for now, waits, and enrols once there is room, rather than giving up.
func TestEnrolmentRefusedForNowIsRetried(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("flood", nil)
	conf, err := tlsutil.PinnedConfig(c.CA, wire.ALPNEnroll)
	if err != nil {
		t.Fatal(err)
	}
	// Far more than the coordinator takes from one address, side by side.
	held := make([]*quic.Conn, 200)
	var wg sync.WaitGroup
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, c.QUIC, conf, &quic.Config{MaxIdleTimeout: time.Minute})
			if err != nil {
				t.Error(err)
				return
			}
			held[i] = conn
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	time.Sleep(time.Second) // the ones over the limit are closed at once
	closed := 0
	for _, conn := range held {
		if conn.Context().Err() != nil {
			closed++
		}
	}
	t.Logf("of %d enrolment connections from one address, the coordinator took %d", len(held), len(held)-closed)
	if closed == 0 || closed == len(held) {
		t.Fatalf("%d of %d enrolment connections from one address refused", closed, len(held))
	}
	refusedBefore := labelled(c, "outpost_coordinator_enrollments_total", "result", "too_many_connections")
	go func() {
		time.Sleep(2 * time.Second)
		for _, conn := range held {
			conn.CloseWithError(0, "")
		}
	}()
	startAgent(t, c, c.EnrollToken("flood", "agent", 1), "flood-1", "127.0.5.60")
	if n := labelled(c, "outpost_coordinator_enrollments_total", "result", "too_many_connections"); n <= refusedBefore {
		t.Fatal("the agent enrolled without being refused first: the flood did not hold the address's limit")
	}
}
