package e2e

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// labelled is the value of a counter with one label set to value.
func labelled(c *coordinatortest.Harness, name, label, value string) float64 {
	mfs, err := c.Reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

type run struct {
	Seq      uint64 `json:"seq"`
	Revision uint64 `json:"revision"`
}

// runsOf is the runs the coordinator kept of an agent, newest first.
func runsOf(c *coordinatortest.Harness, id string) []run {
	var out struct {
		Runs []run `json:"runs"`
	}
	c.MustDo("GET", "/v1/agents/"+id+"/runs", nil, &out)
	return out.Runs
}

// checkRuns fails unless the kept runs are each there once, with no gap.
func checkRuns(t *testing.T, name string, runs []run) {
	t.Helper()
	var seqs []uint64
	for _, r := range runs {
		if r.Seq != 0 {
			seqs = append(seqs, r.Seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i := 1; i < len(seqs); i++ {
		if seqs[i] == seqs[i-1] {
			t.Fatalf("%s: run %d kept twice: %v", name, seqs[i], seqs)
		}
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("%s: runs %d to %d missing: %v", name, seqs[i-1]+1, seqs[i]-1, seqs)
		}
	}
}

func TestRollupCarriesTheOfficesCheckinsAndSurvivesItsCarrier(t *testing.T) {
	c := coordinatortest.New(t)
	const interval = 5 * time.Second
	c.CreateOffice("annex", map[string]any{"checkin_interval": "5s"})
	token := c.EnrollToken("annex", "agent", 5)
	var agents []*testAgent
	for i := range 5 {
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("annex-%d", i), fmt.Sprintf("127.0.0.%d", 110+i)))
	}
	rev := c.Apply("annex", removeHello)
	tu.Eventually(t, 60*time.Second, func() bool {
		for _, a := range agents {
			if len(a.a.GossipPeers()) != 4 {
				return false
			}
		}
		return compliantAt(c, "annex", 5, rev)()
	}, "the office did not form or take its policy")
	// Settle: every member has checked in directly once and found the
	// roll-up member.
	tu.Eventually(t, 30*time.Second, func() bool { return labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept") >= 8 },
		"no check-ins came through the roll-up")

	// Four intervals: the coordinator hears from the office about once an
	// interval (the roll-up member's check-in, a few urgent flushes, a
	// rare safety-net direct check-in), not five times.
	newest := func(a *testAgent) uint64 {
		if r := runsOf(c, a.a.ID()); len(r) > 0 {
			return r[0].Seq
		}
		return 0
	}
	before := map[*testAgent]uint64{}
	for _, a := range agents {
		before[a] = newest(a)
	}
	checkins, kept := c.Metric("outpost_coordinator_checkins_total"), labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept")
	time.Sleep(4 * interval) // a rate over a fixed window is what is measured
	checkins = c.Metric("outpost_coordinator_checkins_total") - checkins
	kept = labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept") - kept
	t.Logf("over 4 intervals: %v check-in messages, %v members' check-ins carried", checkins, kept)
	for _, a := range agents {
		t.Logf("%s: runs %d to %d", a.cfg.Hostname, before[a], newest(a))
	}
	if checkins > 4+3 {
		t.Fatalf("%v check-in messages over 4 intervals from an office of 5 with roll-up", checkins)
	}
	// Every member's runs reached the coordinator all the same: at least
	// two new ones each (about four are made), ten or more runs through
	// at most seven messages. How many check-ins the carrier counts is
	// left loose: it keeps the newest of each member's, so two that
	// arrive between its check-ins count once (members and carrier tick
	// at the same interval, a few milliseconds apart), and until gossip
	// has told every member who carries, two members may each carry
	// some of the office for an interval or two.
	if kept < 4 {
		t.Fatalf("only %v check-ins carried over 4 intervals for 4 members", kept)
	}
	for _, a := range agents {
		if got := newest(a); got < before[a]+2 {
			t.Fatalf("%s: runs %d to %d over 4 intervals, want two new ones at least", a.cfg.Hostname, before[a], got)
		}
	}

	// The carrier (lowest id) goes away; the next one takes over, and no
	// member's run is lost or kept twice.
	carrier := agents[0]
	for _, a := range agents[1:] {
		if a.a.ID() < carrier.a.ID() {
			carrier = a
		}
	}
	last := map[string]uint64{}
	for _, a := range agents {
		if a != carrier {
			last[a.a.ID()] = runsOf(c, a.a.ID())[0].Seq
		}
	}
	carrier.stop()
	batches := c.Metric("outpost_coordinator_rollup_batches_total")
	tu.Eventually(t, 60*time.Second, func() bool {
		for id, seq := range last {
			if r := runsOf(c, id); len(r) == 0 || r[0].Seq < seq+4 {
				return false
			}
		}
		return c.Metric("outpost_coordinator_rollup_batches_total") > batches+2
	}, "the office's check-ins did not go on through another member")
	for _, a := range agents {
		if a != carrier {
			checkRuns(t, a.cfg.Hostname, runsOf(c, a.a.ID()))
		}
	}
}

func TestRollupRefusesForgedCheckins(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("east", map[string]any{"checkin_interval": "1h"})
	c.CreateOffice("west", map[string]any{"checkin_interval": "1h"})
	east := c.EnrollToken("east", "agent", 2)
	a := startAgent(t, c, east, "east-a", "127.0.0.120")
	b := startAgent(t, c, east, "east-b", "127.0.0.121")
	w := startAgent(t, c, c.EnrollToken("west", "agent", 1), "west-w", "127.0.0.122")
	ids := map[string]*member.Identity{}
	for _, ta := range []*testAgent{a, b, w} {
		id, err := member.LoadIdentity(filepath.Join(ta.cfg.DataDir, "identity"))
		if err != nil {
			t.Fatal(err)
		}
		ids[ta.cfg.Hostname] = id
		ta.stop() // their own check-ins would confuse the counts
	}
	ida, idb, idw := ids["east-a"], ids["east-b"], ids["west-w"]
	forged := &wire.CheckinRequest{Hostname: "forged", Report: &wire.Report{Revision: 1, Seq: 999999}}
	sign := func(key *member.Identity, cert *member.Identity, as string) *wire.SignedCheckin {
		sc, err := wire.SignCheckin(key.Certificate().PrivateKey.(crypto.Signer), cert.Certificate().Certificate[0], as, time.Now(), forged)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	stale, err := wire.SignCheckin(idb.Certificate().PrivateKey.(crypto.Signer), idb.Certificate().Certificate[0], idb.ID, time.Now().Add(-time.Hour), forged)
	if err != nil {
		t.Fatal(err)
	}
	batch := []*wire.SignedCheckin{
		sign(ida, ida, idb.ID), // a speaks for b with its own certificate
		sign(ida, idb, idb.ID), // a speaks for b with b's certificate
		sign(idw, idw, idw.ID), // a carries a genuine check-in of another office
		stale,                  // an old genuine check-in of b, replayed
	}

	// a, as the office's roll-up member, carries them.
	link, err := member.NewClient(ida, c.QUIC, func(context.Context, *wire.Request) *wire.Response { return nil }, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	// One batch each: a batch carries one check-in per member (three of
	// these name b), and the coordinator refuses the others unverified.
	for _, sc := range batch {
		resp, err := link.Call(cctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Hostname: "east-a", Rollup: []*wire.SignedCheckin{sc}}}})
		if err != nil {
			t.Fatal(err)
		}
		if acks := resp.GetCheckin().GetRollupAcks(); len(acks) != 0 {
			t.Fatalf("forged check-ins acknowledged: %v", acks)
		}
	}
	for result, want := range map[string]float64{"signature": 2, "office": 1, "stale": 1, "kept": 0} {
		if got := labelled(c, "outpost_coordinator_rollup_reports_total", "result", result); got != want {
			t.Errorf("rolled-up check-ins %s: %v, want %v", result, got, want)
		}
	}
	for _, id := range []string{idb.ID, idw.ID} {
		for _, r := range runsOf(c, id) {
			if r.Seq == 999999 {
				t.Fatalf("a forged run was kept for %s", id)
			}
		}
	}
	// A genuine one is kept, and its ack verifies with the policy key.
	genuine, err := wire.SignCheckin(idb.Certificate().PrivateKey.(crypto.Signer), idb.Certificate().Certificate[0], idb.ID, time.Now(),
		&wire.CheckinRequest{Hostname: "east-b", Report: &wire.Report{Revision: 0, Seq: 777}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := link.Call(cctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Hostname: "east-a", Rollup: []*wire.SignedCheckin{genuine}}}})
	if err != nil {
		t.Fatal(err)
	}
	acks := resp.GetCheckin().GetRollupAcks()
	if len(acks) != 1 {
		t.Fatalf("genuine check-in: %d acks", len(acks))
	}
	ack, err := wire.VerifyRollupAck(idb.PolicyKey, acks[0])
	if err != nil || ack.GetMemberId() != idb.ID || ack.GetAckedSeq() != 777 {
		t.Fatalf("ack %v: %v", ack, err)
	}
	if r := runsOf(c, idb.ID); len(r) == 0 || r[0].Seq != 777 {
		t.Fatalf("genuine rolled-up run not kept: %v", r)
	}
}

// A member that takes a new revision and runs it at once reports once:
// that it holds the revision and how the run went, in one check-in
// handed to the roll-up member — not a check-in for the revision and
// another for the run.
func TestRolloutCostsEachMemberOneReport(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("wing", map[string]any{"checkin_interval": "1m"})
	token := c.EnrollToken("wing", "agent", 5)
	var agents []*testAgent
	for i := range 5 {
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("wing-%d", i), fmt.Sprintf("127.0.0.%d", 120+i)))
	}
	rev := c.Apply("wing", "items: []\n")
	tu.Eventually(t, 60*time.Second, func() bool {
		for _, a := range agents {
			if len(a.a.GossipPeers()) != 4 {
				return false
			}
		}
		return compliantAt(c, "wing", 5, rev)()
	}, "the office did not form or take its policy")
	// Settle: new revisions until the members hand their reports to the
	// roll-up member (each is news, passed on within seconds).
	for start := time.Now(); labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept") < 8; {
		if time.Since(start) > time.Minute {
			t.Fatal("no check-ins came through the roll-up")
		}
		rev = c.ApplyNew("wing", "items: []\n")
		time.Sleep(5 * time.Second)
	}
	tu.Eventually(t, 30*time.Second, compliantAt(c, "wing", 5, rev), "the office did not take its revisions")
	time.Sleep(3 * time.Second)
	carrier := agents[0]
	for _, a := range agents[1:] {
		if a.a.ID() < carrier.a.ID() {
			carrier = a
		}
	}
	// A member that, for a moment, took another for the roll-up member
	// (the office's gossip flapped under load) has that one check in to
	// pass its report on: a check-in of the office more, but no report
	// more. Those are counted apart (pass_on) and shown.
	path := func(a *testAgent, p string) float64 {
		return counterBy(t, a.reg, "outpost_agent_rollup_reports_total", "path", p)
	}
	reports := func(a *testAgent) float64 { return path(a, "rollup") + path(a, "direct") }
	// One rollout measured; a flap of the office at that very moment can
	// cost a member a second report (its first went to a member that was
	// gone), so a rollout that does is measured again, up to three times.
	// Two reports per member for every rollout fails all three.
	for attempt := 1; ; attempt++ {
		before, beforeDirect, beforePassOn := map[*testAgent]float64{}, map[*testAgent]float64{}, map[*testAgent]float64{}
		for _, a := range agents {
			before[a] = reports(a)
			beforeDirect[a], beforePassOn[a] = path(a, "direct"), path(a, "pass_on")
		}
		rev = c.ApplyNew("wing", "items: []\n")
		tu.Eventually(t, 30*time.Second, compliantAt(c, "wing", 5, rev), "the office did not take the new revision")
		time.Sleep(3 * time.Second) // anything late would show now
		total := 0.0
		for _, a := range agents {
			if a == carrier {
				continue // it also checks in to pass the others' reports on
			}
			n := reports(a) - before[a]
			t.Logf("rollout %d, %s: %v reports (%v direct), %v check-ins to pass others' on", attempt, a.cfg.Hostname, n,
				path(a, "direct")-beforeDirect[a], path(a, "pass_on")-beforePassOn[a])
			total += n
		}
		if total <= 4 {
			return
		}
		if attempt == 3 {
			t.Fatalf("the 4 members other than the roll-up member made %v reports for one rollout, want one each (3 rollouts measured)", total)
		}
		t.Logf("rollout %d: %v reports for 4 members; measuring another", attempt, total)
	}
}
