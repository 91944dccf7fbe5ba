package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
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
	// A report tells its time in whole seconds: a run at .9 s is "1s ago"
	// a moment later.
	r := tina.run("", "sync", "pc-annex-1")
	if r.code != 0 || !regexp.MustCompile(fmt.Sprintf(`revision %d, run (just now|[1-3]s ago): 1 item, 1 compliant`, rev)).MatchString(r.stdout) ||
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
			// How long it took varies; it is never negative (the sync's
			// check-in moves the clock sessions used to time it by).
			if e.Action == "sync.end" && strings.HasPrefix(e.Detail, "sync: done after ") {
				if strings.HasPrefix(e.Detail, "sync: done after -") {
					t.Fatalf("a sync took a negative time: %s", e.Detail)
				}
				seen["tina sync.end"] = true
			}
		}
		return seen["tina reboot true reboot in 2m0s: finish the March patches"] && seen["tina reboot true reboot cancel"] &&
			seen["tina sync true sync"] && seen["tina sync.end"] && seen["tom reboot false reboot now: refused: tom may not reboot the host on this host (needs the control right): ask an admin (outpost perm)"]
	}, "audit records of the host missing")
}

// A patch that needs a reboot, approved with notify-only, is installed and
// the host is then listed as waiting for a reboot, with the patch and
// since when, until it has booted again; a technician finds it, and
// the run after the reboot clears it.
func TestAHostWaitingForARebootIsFoundUntilItReboots(t *testing.T) {
	managePlugins(t)
	m := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("annex", map[string]any{"checkin_interval": "1h"})
	var boot atomic.Value
	boot.Store("3f1c0b6e-first")
	pc := startAgent(t, c, c.EnrollToken("annex", "agent", 1), "pc-annex-2", "127.0.0.46",
		agent.WithBootID(func() string { return boot.Load().(string) }), agent.WithPower(func(context.Context, ...string) error { return nil }))
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata/packages", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sha1, sha2 := c.Upload("hello-1.0.0.tar.gz", read("hello-1.0.0.tar.gz")), c.Upload("hello-2.0.0.tar.gz", read("hello-2.0.0.tar.gz"))
	rev := c.Apply("annex", fmt.Sprintf("items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: %s\n", sha1))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "annex", 1, rev), "hello 1.0.0 not installed")
	c.Apply("annex", "items: []\n")
	c.MustDo("POST", "/v1/patches/import", fmt.Sprintf("patches:\n  - {id: OUT-9, title: hello fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: %s, reboot_required: true}\n", sha2), nil)
	c.MustDo("POST", "/v1/patches/OUT-9/approve", map[string]any{"office": "annex", "reboot": "notify-only"}, nil)
	type agentReboot struct {
		Agents []struct {
			Hostname string
			Reboot   *struct {
				Items []string
				Since time.Time
			}
		}
	}
	var waiting agentReboot
	testutil.Eventually(t, 60*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents?state=reboot", nil, &waiting)
		return len(waiting.Agents) == 1
	}, "the host is not listed as waiting for a reboot")
	if r := waiting.Agents[0].Reboot; waiting.Agents[0].Hostname != "pc-annex-2" || fmt.Sprint(r.Items) != "[patch/OUT-9]" || time.Since(r.Since) > time.Minute {
		t.Fatalf("waiting for a reboot: %+v", waiting.Agents[0])
	}
	if st, msg := item(c, "annex", "pc-annex-2", "patch/OUT-9"); st != "compliant" {
		t.Fatalf("patch/OUT-9 %s: %s", st, msg)
	}

	tina := newTechnician(t, c, "tina")
	rev = setOfficePerms(t, c, "annex", map[string]any{"subject": "user:tina", "rights": []string{"control"}})
	waitRevision(t, pc, rev)
	tina.login()
	// Later runs still say so: the host has not booted.
	if r := tina.run("", "sync", "pc-annex-2"); r.code != 0 || !strings.Contains(r.stdout, "waiting for a reboot since") || !strings.Contains(r.stdout, "patch/OUT-9") {
		t.Fatalf("sync before the reboot: %v", r)
	}
	boot.Store("9a2d7c41-second") // the host rebooted
	if r := tina.run("", "sync", "pc-annex-2"); r.code != 0 || strings.Contains(r.stdout, "waiting for a reboot") {
		t.Fatalf("sync after the reboot: %v", r)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents?state=reboot", nil, &waiting)
		return len(waiting.Agents) == 0
	}, "the host is still listed as waiting for a reboot after it rebooted")
}
