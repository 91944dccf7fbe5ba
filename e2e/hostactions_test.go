package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// powerCalls records the shutdown commands an agent runs.
type powerCalls struct {
	mu    sync.Mutex
	calls []string
}

func (p *powerCalls) run(_ context.Context, argv ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, strings.Join(argv, " "))
	return nil
}

func (p *powerCalls) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// A technician with the control right has a host run its policy now and
// sees each item's result, and reboots it (and calls a reboot off); one
// without it is refused and nothing runs; the host's audit log has it all.
func TestTechnicianRunsThePolicyAndRebootsAHost(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("annex", map[string]any{"checkin_interval": "1h"})
	power := &powerCalls{}
	pc := startAgent(t, c, c.EnrollToken("annex", "agent", 1), "pc-annex-1", "127.0.0.45", agent.WithPower(power.run))
	rev := c.Apply("annex", removeHello)
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "annex", 1, rev), "the agent did not take the policy")
	tina, tom := newTechnician(t, c, "tina"), newTechnician(t, c, "tom")
	rev = setOfficePerms(t, c, "annex",
		map[string]any{"subject": "user:tina", "rights": []string{"view", "control"}},
		map[string]any{"subject": "user:tom", "rights": []string{"view", "command"}})
	waitRevision(t, pc, rev)
	tina.login()
	tom.login()

	runs := len(runsOf(c, pc.a.ID()))
	r := tina.run("", "sync", "pc-annex-1")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("revision %d, run just now: 1 items, 1 compliant", rev)) ||
		!strings.Contains(r.stdout, "hello") || !strings.Contains(r.stderr, "running the policy on pc-annex-1") {
		t.Fatalf("sync: %v", r)
	}
	// The run it made reaches the coordinator like any other.
	testutil.Eventually(t, 20*time.Second, func() bool { return len(runsOf(c, pc.a.ID())) > runs }, "the run the technician asked for was not reported")
	if r := tom.run("", "sync", "pc-annex-1"); r.code == 0 || !strings.Contains(r.stderr, "tom may not run the policy on this host (needs the control right)") {
		t.Fatalf("tom's sync: %v", r)
	}

	r = tina.run("", "reboot", "pc-annex-1", "--in", "90s", "--reason", "finish the\nMarch patches")
	if r.code != 0 || r.stdout != "rebooting in 2m0s\n" {
		t.Fatalf("reboot: %v", r)
	}
	if r := tina.run("", "reboot", "pc-annex-1", "--cancel"); r.code != 0 || r.stdout != "reboot cancelled\n" {
		t.Fatalf("reboot --cancel: %v", r)
	}
	if r := tina.run("", "reboot", "pc-annex-1", "--now"); r.code != 0 || r.stdout != "rebooting now\n" {
		t.Fatalf("reboot --now: %v", r)
	}
	if r := tom.run("", "reboot", "pc-annex-1", "--now"); r.code == 0 || !strings.Contains(r.stderr, "tom may not reboot the host on this host (needs the control right)") {
		t.Fatalf("tom's reboot: %v", r)
	}
	if r := tina.run("", "reboot", "pc-annex-1", "--now", "--in", "5m"); r.code != 2 {
		t.Fatalf("reboot --now --in: %v", r)
	}
	want := []string{
		"shutdown -r +2 outpost: finish the March patches",
		"shutdown -c",
		"shutdown -r now outpost: a technician reboots this computer",
	}
	if got := power.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("shutdown commands run:\n%q\nwant\n%q", got, want)
	}

	type event struct {
		Actor, Action, Detail string
		Allowed               bool
	}
	var got struct{ Events []event }
	testutil.Eventually(t, 20*time.Second, func() bool {
		c.MustDo("GET", "/v1/audit?host="+pc.a.ID(), nil, &got)
		seen := map[string]bool{}
		for _, e := range got.Events {
			seen[fmt.Sprintf("%s %s %v %s", e.Actor, e.Action, e.Allowed, e.Detail)] = true
			// How long it took varies.
			if e.Action == "sync.end" && strings.HasPrefix(e.Detail, "sync: done after ") {
				seen["tina sync.end"] = true
			}
		}
		return seen["tina reboot true reboot in 2m0s: finish the March patches"] && seen["tina reboot true reboot cancel"] &&
			seen["tina sync true sync"] && seen["tina sync.end"] && seen["tom reboot false reboot now: refused: tom may not reboot the host on this host (needs the control right): ask an admin (outpost perm)"]
	}, "audit records of the host missing")
}
