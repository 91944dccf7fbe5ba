package agent

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// A push of a revision the member took from its office already asks for
// nothing: no check-in of its own, no direct one. Any other push does.
func TestPushOfARevisionHeldAsksForNoCheckin(t *testing.T) {
	st := holding5(t)
	for name, tc := range map[string]struct {
		notice *wire.RevisionNotice
		news   bool
	}{
		"held":         {&wire.RevisionNotice{Office: "wing", Revision: 5}, false},
		"older":        {&wire.RevisionNotice{Office: "wing", Revision: 4}, false},
		"newer":        {&wire.RevisionNotice{Office: "wing", Revision: 6}, true},
		"other office": {&wire.RevisionNotice{Office: "hall", Revision: 5}, true},
		"moved":        {&wire.RevisionNotice{}, true},
	} {
		t.Run(name, func(t *testing.T) {
			a := &Agent{log: logging.Discard(), state: st, office: "wing", kick: make(chan struct{}, 1)}
			a.rollup = &rollup{a: a}
			if resp := a.onPush(context.Background(), &wire.Request{Body: &wire.Request_RevisionNotice{RevisionNotice: tc.notice}}); resp != nil {
				t.Fatalf("answer %v", resp)
			}
			kicked := len(a.kick) == 1
			if kicked != tc.news || a.rollup.direct != tc.news {
				t.Fatalf("check-in asked for: %v, direct: %v; want %v", kicked, a.rollup.direct, tc.news)
			}
		})
	}
}

// A kick makes a report only when there is something the last one did not
// tell.
func TestNewsIsWhatTheLastReportDidNotTell(t *testing.T) {
	st := holding5(t)
	if err := st.SetReport(&wire.Report{Revision: 5, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	fresh := func() *Agent {
		a := &Agent{log: logging.Discard(), state: st, office: "wing", kick: make(chan struct{}, 1)}
		a.rollup = &rollup{a: a}
		a.reported(told{revision: st.Revision(), report: st.Report()})
		return a
	}
	if a := fresh(); a.news() {
		t.Fatal("news right after a report of everything")
	}
	// The policy run again with the same outcome.
	a := fresh()
	if err := st.SetReport(&wire.Report{Revision: 5, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if a.news() {
		t.Fatal("a run again with the same outcome is news")
	}
	if err := st.SetReport(&wire.Report{Revision: 5, Seq: 3, Items: []*wire.ItemReport{{Id: "vim", Status: wire.ItemReport_STATUS_FAILED}}}); err != nil {
		t.Fatal(err)
	}
	if !a.news() {
		t.Fatal("a run with another outcome is not news")
	}
	for name, change := range map[string]func(a *Agent){
		"a misbehaving peer":   func(a *Agent) { a.peerReports = []string{"ag-2: sent a policy that was refused"} },
		"a direct check-in":    func(a *Agent) { a.rollup.checkinDirectly() },
		"a revision not held":  func(a *Agent) { a.notice(6) },
		"an older report told": func(a *Agent) { a.told.report = &wire.Report{Revision: 4} },
		"an older revision":    func(a *Agent) { a.told.revision = 4 },
	} {
		a := fresh()
		change(a)
		if !a.news() {
			t.Errorf("%s is not news", name)
		}
	}
}

// holding5 is an agent's state holding revision 5 of office wing.
func holding5(t *testing.T) *state.State {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	st, err := state.Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := wire.SignPolicy(priv, &wire.Policy{Office: "wing", Revision: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accept(sp, "wing", "ag-1"); err != nil {
		t.Fatal(err)
	}
	return st
}
