package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// The host's audit records end up in `outpost audit`'s table on an admin's
// terminal. What a technician typed — and, on the direct listener, what
// anyone at all sends, with no credential — must not reach it as terminal
// controls (an ESC clears or retitles the terminal, a CR/LF forges rows):
// the user name of a break-glass attempt, an exec's argv and a copy's
// path and name are recorded with them written out.
func TestAuditRecordsCarryNoTerminalControls(t *testing.T) {
	f := newFixture(t)
	evil := "\x1b[2J\x1b[H\r\n2031-01-01 00:00:00  admin  exec  yes  host pc-1\x1b]0;pwned\x07\u202e"
	from := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 4000})
	opens := []struct {
		ctx  context.Context
		open *wire.SessionOpen
	}{
		// No credential at all: break-glass is off on this host.
		{from, &wire.SessionOpen{LocalUser: "eve" + evil, LocalPassword: "x", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/true"}}},
		{from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", evil}}},
		{from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_PUT, Path: "/tmp/x" + evil, Name: "n" + evil}},
		{from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_GET, Path: "/tmp/x" + evil}},
		// An allowed technician's own command line.
		{context.Background(), &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", evil}}},
	}
	for _, o := range opens {
		_, res := f.openCtx(t, o.ctx, o.open)
		wait(t, res, 10*time.Second)
	}
	recs := f.s.PendingAudit()
	if len(recs) < len(opens) {
		t.Fatalf("%d audit records, want at least %d", len(recs), len(opens))
	}
	for _, r := range recs {
		for field, v := range map[string]string{"user": r.GetUser(), "action": r.GetAction(), "detail": r.GetDetail()} {
			if c := testutil.TerminalControls(v); c != "" {
				t.Errorf("audit record %s %q carries %s (allowed=%v): want terminal controls written out",
					field, v, c, r.GetAllowed())
			}
		}
	}
}

// A refused attempt costs the sender nothing (no credential on the direct
// listener; any technician through the broker), and may name a path of
// up to wire.MaxSessionOpenSize (256 KiB). Its record is bounded: whole
// paths would make a batch of the spool larger than wire.MaxMessageSize,
// so that no record of this host reached the coordinator again, and every
// new record would rewrite a spool of gigabytes.
func TestARefusedAttemptsRecordIsBounded(t *testing.T) {
	f := newFixture(t)
	from := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 4000})
	long := "/tmp/" + strings.Repeat("A", 250<<10)
	_, res := f.openCtx(t, from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_PUT, Path: long})
	if r := wait(t, res, 10*time.Second); !r.end.GetDenied() {
		t.Fatalf("end %v, want refused", r.end)
	}
	recs := f.s.PendingAudit()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	const bound = 4096 // the coordinator keeps 1024 bytes of a detail anyway
	if n := len(recs[0].GetDetail()); n > bound {
		// What flushAudit would send once 40 such attempts are spooled.
		var batch wire.AuditBatch
		for i := range 40 {
			c := proto.Clone(recs[0]).(*wire.AuditRecord)
			c.Id = fmt.Sprint(i)
			batch.Records = append(batch.Records, c)
		}
		err := wire.WriteMsg(io.Discard, &wire.Request{Body: &wire.Request_Audit{Audit: &batch}})
		t.Fatalf("the record of one refused, unauthenticated put is %d bytes (want at most %d); 40 of them make the audit flush fail: %v (ErrTooLarge: %v)",
			n, bound, err, errors.Is(err, wire.ErrTooLarge))
	}
}

// The spool keeps records "on disk until the coordinator acknowledges
// them", up to maxAuditSpool. Past that, refused attempts go first: an
// unauthenticated sender of them (one stream each on the direct
// listener, typically while the coordinator is unreachable — when
// break-glass is used) must not push the records of sessions that ran
// out of the spool before they were ever sent.
func TestRefusalsDoNotEvictRecordsOfSessionsThatRan(t *testing.T) {
	f := newFixture(t)
	_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "evidence"}})
	if r := wait(t, res, 10*time.Second); r.end.GetExitCode() != 0 {
		t.Fatalf("exec: %v", r.end)
	}
	// As maxAuditSpool-2 refused attempts from the network would leave it
	// (spooled directly: one at a time through Serve rewrites the whole
	// spool for each and takes minutes).
	f.s.mu.Lock()
	for i := len(f.s.audit); i < maxAuditSpool; i++ {
		f.s.audit = append(f.s.audit, &wire.AuditRecord{Id: fmt.Sprintf("f%d", i), AtUnixMs: time.Now().UnixMilli(), User: "?", Action: "exec",
			Detail: "exec /bin/true (from 127.0.0.9): refused: access token is malformed", Host: "ag-1"})
	}
	f.s.mu.Unlock()
	// One more refused attempt, with no credential.
	from := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 4000})
	_, res = f.openCtx(t, from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/true"}})
	wait(t, res, 10*time.Second)
	var kept []string
	for _, r := range f.s.PendingAudit() {
		if r.GetUser() == "tina" && r.GetAllowed() {
			kept = append(kept, r.GetAction())
		}
	}
	if strings.Join(kept, " ") != "exec exec.end" {
		t.Fatalf("records of tina's session still spooled: %v; want exec and exec.end kept (unacknowledged records of sessions that ran must not be evicted by refused attempts)", kept)
	}
}

// flipPolicy is a policy source whose first answer allows and every later
// one no longer does: an admin's permission change arriving while a
// session is being opened.
type flipPolicy struct {
	calls        atomic.Int32
	before, next *wire.Policy
}

func (p *flipPolicy) Policy() *wire.Policy {
	if p.calls.Add(1) == 1 {
		return p.before
	}
	return p.next
}

// Serve checks again, under its lock, whether the policy or revocation
// list that arrived meanwhile still allows the session — and refuses it
// when not. That refusal is audited and counted like any other ("hosts
// record every session and command, allowed or refused").
func TestARefusalAtTheLastCheckIsAuditedAndCounted(t *testing.T) {
	f := newFixture(t)
	next := proto.Clone(f.p).(*wire.Policy)
	next.Permissions = nil // the group loses every right
	src := &flipPolicy{before: f.p, next: next}
	reg := prometheus.NewRegistry()
	s, err := New(Config{DataDir: t.TempDir(), MemberID: "ag-1", Shell: "/bin/sh"}, src, fixedInventory{}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	tech, host := net.Pipe()
	t.Cleanup(func() { tech.Close() })
	go s.Serve(context.Background(), host, func() { host.Close() })
	if err := wire.WriteMsg(tech, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "hi"}}); err != nil {
		t.Fatal(err)
	}
	tech.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m wire.SessionOutput
	if err := wire.ReadMsg(tech, &m); err != nil {
		t.Fatal(err)
	}
	if !m.GetEnd().GetDenied() {
		t.Fatalf("first answer %v, want the late refusal", &m)
	}
	if n := counted(t, reg, "outpost_agent_sessions_total", "kind", "exec", "result", "denied"); n != 1 {
		t.Errorf("refusals counted: %v, want 1", n)
	}
	recs := s.PendingAudit()
	for _, r := range recs {
		if !r.GetAllowed() && r.GetUser() == "tina" && strings.Contains(r.GetDetail(), "echo hi") {
			return
		}
	}
	t.Fatalf("session refused (%q) but the audit spool holds %d records and none of the refusal: %v", m.GetEnd().GetError(), len(recs), recs)
}

// A token whose signature verifies names its user: a refusal after that
// (a session token for another host, an expired one) is recorded under
// that user, not "?", so that `outpost audit --user tina` shows it.
func TestARefusalOfAVerifiedTokenNamesItsUser(t *testing.T) {
	f := newFixture(t)
	other, err := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"},
		IssuedUnixMs: time.Now().UnixMilli(), ExpiresUnixMs: time.Now().Add(time.Minute).UnixMilli(), Audience: "ag-2"})
	if err != nil {
		t.Fatal(err)
	}
	_, res := f.open(t, &wire.SessionOpen{Token: other, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/true"}})
	if r := wait(t, res, 10*time.Second); !r.end.GetDenied() {
		t.Fatalf("end %v, want refused", r.end)
	}
	recs := f.s.PendingAudit()
	if len(recs) != 1 || recs[0].GetUser() != "tina" {
		t.Fatalf("records %v: want the refusal recorded as tina's", recs)
	}
}

// A full spool makes room by dropping the oldest refused attempt; only a
// spool of records of sessions that ran, alone, loses its oldest.
func TestAFullSpoolDropsTheOldestRefusalFirst(t *testing.T) {
	rec := func(id string, allowed bool) *wire.AuditRecord { return &wire.AuditRecord{Id: id, Allowed: allowed} }
	ids := func(recs []*wire.AuditRecord) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.GetId())
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		in   []*wire.AuditRecord
		want string
	}{
		{"refusals after sessions", []*wire.AuditRecord{rec("ran1", true), rec("no1", false), rec("ran2", true), rec("no2", false)}, "ran1 ran2 no2"},
		{"a refusal first", []*wire.AuditRecord{rec("no1", false), rec("ran1", true)}, "ran1"},
		{"no refusal", []*wire.AuditRecord{rec("ran1", true), rec("ran2", true), rec("ran3", true)}, "ran2 ran3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(dropOne(tc.in)); got != tc.want {
				t.Fatalf("left %q, want %q", got, tc.want)
			}
		})
	}
}

// counted is the value of the counter name with the label pairs given.
func counted(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// Refused attempts cost their sender nothing and the host a write to its
// disk each: past a burst, they are counted rather than recorded
// one by one, and the count is recorded with the next one that is.
func TestRefusedAttemptsPastABurstAreCountedNotRecordedOneByOne(t *testing.T) {
	f := newFixture(t)
	clock := time.Now()
	var mu sync.Mutex
	f.s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	from := WithRemote(context.Background(), &net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 4000})
	refuse := func() {
		t.Helper()
		_, res := f.openCtx(t, from, &wire.SessionOpen{Token: "ott1.garbage", Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"id"}})
		if r := wait(t, res, 10*time.Second); !r.end.GetDenied() {
			t.Fatalf("end %v, want refused", r.end)
		}
	}
	const tries = refusalBurst + 30
	for range tries {
		refuse()
	}
	if n := len(f.s.PendingAudit()); n != refusalBurst {
		t.Fatalf("%d refused attempts in an instant left %d records, want the burst of %d", tries, n, refusalBurst)
	}
	// A second later the next one is recorded, with the count of the others.
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	refuse()
	recs := f.s.PendingAudit()
	if len(recs) != refusalBurst+2 {
		t.Fatalf("%d records, want %d", len(recs), refusalBurst+2)
	}
	if sum := recs[len(recs)-2].GetDetail(); !strings.Contains(sum, "30 more refused attempts") {
		t.Fatalf("the count of the attempts not recorded: %q", sum)
	}
}
