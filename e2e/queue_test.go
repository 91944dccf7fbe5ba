package e2e

import (
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

func TestRunsMadeWhileCutOffArriveOnce(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("ship", map[string]any{"checkin_interval": "5s"})
	a := startAgent(t, c, c.EnrollToken("ship", "agent", 1), "ship-pc", "127.0.0.70")
	rev := c.Apply("ship", removeHello)
	tu.Eventually(t, 30*time.Second, compliantAt(c, "ship", 1, rev), "agent compliant")

	type runs struct {
		Runs []struct {
			Seq      uint64 `json:"seq"`
			Revision uint64 `json:"revision"`
		} `json:"runs"`
	}
	var before runs
	c.MustDo("GET", "/v1/agents/"+a.a.ID()+"/runs", nil, &before)
	if len(before.Runs) == 0 {
		t.Fatal("no runs kept before the coordinator went away")
	}
	last := before.Runs[0].Seq // newest first

	// The coordinator is away for a few intervals; the agent goes on
	// running its policy and keeps each run.
	c.Stop()
	time.Sleep(12 * time.Second) // two or more 5s intervals must pass: that is the point
	c.Restart()

	var after runs
	tu.Eventually(t, 60*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents/"+a.a.ID()+"/runs", nil, &after)
		return len(after.Runs) > 0 && after.Runs[0].Seq >= last+3
	}, "the runs made while the coordinator was away did not arrive: %+v", after)
	// Each run once, in order (newest first), none missing since the last
	// one seen before.
	seen := map[uint64]bool{}
	prev := ^uint64(0)
	for _, r := range after.Runs {
		if r.Seq == 0 {
			continue
		}
		if seen[r.Seq] || r.Seq > prev {
			t.Fatalf("run %d kept twice or out of order: %+v", r.Seq, after.Runs)
		}
		seen[r.Seq], prev = true, r.Seq
	}
	for s := last; s <= after.Runs[0].Seq; s++ {
		if !seen[s] {
			t.Fatalf("run %d is missing: %+v", s, after.Runs)
		}
	}
}
