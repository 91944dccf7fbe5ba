package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
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
