package quicsrv

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// logRecords keeps what is logged, for the test to count.
type logRecords struct{ testutil.Logs }

// count is how many records at level say msg.
func (l *logRecords) count(level slog.Level, msg string) int {
	return l.Count(level, func(m string) bool { return strings.Contains(m, msg) })
}

// checkinServer is a server with one enrolled agent, agent-1, named pc-1.
func checkinServer(t *testing.T) (*Server, *store.Store, *logRecords) {
	t.Helper()
	authority, err := ca.LoadOrCreate(t.TempDir(), nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	if err := st.CreateOffice(store.Office{Name: "berlin", Mode: "direct", CheckinInterval: time.Minute, Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(store.Token{ID: "tok", Hash: "hash", Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll("hash", now, func(_ store.Token, o store.Office) (store.Member, error) {
		return store.Member{ID: "agent-1", Hostname: "pc-1", Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	logs := &logRecords{}
	s, err := New(Config{}, authority, st, nil, nil, slog.New(logs), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s, st, logs
}

const badHostnameLog = "hostname that is not valid"

// An agent cannot rename itself at check-in to a hostname enrollment would
// refuse: control characters, spaces, non-ASCII, too long. The check-in
// still succeeds (the host does not go dark), the stored hostname stays,
// and the coordinator warns once, not at every check-in. A valid rename is
// still taken.
func TestCheckinHostnameValidated(t *testing.T) {
	s, st, logs := checkinServer(t)
	hostname := func() string {
		t.Helper()
		m, err := st.Member("agent-1")
		if err != nil {
			t.Fatal(err)
		}
		return m.Hostname
	}
	checkin := func(name string) {
		t.Helper()
		resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: name, Revision: 1})
		if err := resp.AsError(); err != nil {
			t.Fatalf("check-in with hostname %q failed: %v", name, err)
		}
		if resp.GetCheckin() == nil {
			t.Fatalf("check-in with hostname %q: no check-in answer", name)
		}
	}

	bad := []string{
		"pc-1\x1b[31mADMIN\x1b[0m",
		"pc-2\nlevel=ERROR msg=forged",
		"pc\x00-2",
		"pc 2",
		"pc\t2",
		"pc-\x7f",
		"häst",
		"pc-2\u202e",
		strings.Repeat("a", 254),
		"ag-3f9c2a", // a member id's start: technicians type those
		"AG-0011223344556677",
		"rl-abcd",
	}
	for _, name := range bad {
		checkin(name)
		if got := hostname(); got != "pc-1" {
			t.Fatalf("after a check-in as %q the hostname is %q, want pc-1 kept", name, got)
		}
	}
	if n := logs.count(slog.LevelWarn, badHostnameLog); n != 1 {
		t.Errorf("%d warnings for %d check-ins with a bad hostname, want 1", n, len(bad))
	}
	if n := logs.count(slog.LevelDebug, badHostnameLog); n != len(bad)-1 {
		t.Errorf("%d debug records for the later bad hostnames, want %d", n, len(bad)-1)
	}

	// An empty hostname is no rename either.
	checkin("")
	if got := hostname(); got != "pc-1" {
		t.Fatalf("after a check-in without a hostname the hostname is %q, want pc-1", got)
	}

	// Valid renames are taken, trimmed; the longest valid name too.
	for name, want := range map[string]string{
		"pc-2":                   "pc-2",
		"  pc-3.example.org\t":   "pc-3.example.org",
		strings.Repeat("b", 253): strings.Repeat("b", 253),
		"PC_4~(legacy)!":         "PC_4~(legacy)!",
	} {
		checkin(name)
		if got := hostname(); got != want {
			t.Fatalf("after a check-in as %q the hostname is %q, want %q", name, got, want)
		}
	}
	if n := logs.count(slog.LevelWarn, badHostnameLog); n != 1 {
		t.Errorf("valid renames were warned about: %d warnings", n)
	}
}

// The warning comes again after hostnameWarnEvery, and once for each
// member.
func TestHostnameWarningsRateLimited(t *testing.T) {
	var w hostnameWarnings
	now := time.Now()
	if !w.due("a", now) {
		t.Fatal("first warning for a not due")
	}
	if w.due("a", now.Add(time.Minute)) || w.due("a", now.Add(hostnameWarnEvery-time.Second)) {
		t.Fatal("a warned again before hostnameWarnEvery")
	}
	if !w.due("b", now.Add(time.Minute)) {
		t.Fatal("first warning for b not due")
	}
	if !w.due("a", now.Add(hostnameWarnEvery)) {
		t.Fatal("a not warned again after hostnameWarnEvery")
	}
	// Many members: the warnings that are over are forgotten.
	for i := range 5000 {
		w.due(fmt.Sprint("m", i), now)
	}
	w.due("late", now.Add(3*hostnameWarnEvery))
	if len(w.last) > 4097 {
		t.Fatalf("%d warnings remembered", len(w.last))
	}
}
