package quicsrv

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// evilText is what a technician, or anyone refused, may try to put on an
// admin's terminal: a clear screen, a forged row of the audit table, a
// retitled window, a right-to-left override.
const evilText = "\x1b[2J\x1b[H\r\n2031-01-01 00:00:00  admin  exec  yes  host pc-1\x1b]0;pwned\x07\u202e"

// A host's text is not trusted: what it sends — and, through it, what
// anyone whose attempt it records sent — must not reach an admin's
// terminal through outpost audit as controls or forged table rows. The
// coordinator stores it with them written out.
func TestHostAuditRecordsAreStoredWithControlsWrittenOut(t *testing.T) {
	s, st, _ := checkinServer(t)
	if err := st.InitAuth(); err != nil {
		t.Fatal(err)
	}
	b := &wire.AuditBatch{Records: []*wire.AuditRecord{
		{Id: "r1", AtUnixMs: time.Now().UnixMilli(), User: "local:eve" + evilText, Action: "exec" + evilText, Detail: "exec " + evilText},
	}}
	if resp := s.storeAudit("agent-1", b); resp.GetError() != nil {
		t.Fatal(resp.GetError())
	}
	evs, err := st.Audit(store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events stored, want 1", len(evs))
	}
	for _, ev := range evs {
		for field, v := range map[string]string{"actor": ev.Actor, "action": ev.Action, "detail": ev.Detail} {
			if c := testutil.TerminalControls(v); c != "" {
				t.Errorf("stored %s of host record %s carries %s: %q", field, ev.ID, c, v)
			}
		}
	}
}

// refusingVerifier refuses every token and keeps what the broker records.
type refusingVerifier struct {
	mu     sync.Mutex
	events []store.AuditEvent
}

func (v *refusingVerifier) Verify(string) (*auth.Principal, error) {
	return nil, errors.New("access token is malformed")
}

func (v *refusingVerifier) SessionToken(*auth.Principal, string) (string, time.Time, error) {
	return "", time.Time{}, errors.New("no")
}

func (v *refusingVerifier) SignedRevocations() (*wire.SignedRevocations, error) { return nil, nil }

func (v *refusingVerifier) Audit(ev store.AuditEvent) {
	v.mu.Lock()
	v.events = append(v.events, ev)
	v.mu.Unlock()
}

// Anyone who reaches the coordinator's QUIC port (no credential: the
// token is refused) has the host name of their SessionOpen recorded as
// the target of a refused "connect", shown in outpost audit's WHERE
// column: it is recorded with its controls written out.
func TestABrokerRefusalsTargetIsRecordedWithControlsWrittenOut(t *testing.T) {
	s, _, _ := checkinServer(t)
	v := &refusingVerifier{}
	s.SetAccess(v)
	ctx := runOnLoopback(t, s)
	tlsConf, err := tlsutil.PinnedConfig(s.ca.Fingerprint(), wire.ALPNTechnician)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := quic.DialAddr(dctx, s.Addr().String(), tlsConf, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(dctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteMsg(str, &wire.SessionOpen{Token: "ott1.garbage", Host: "pc-1" + evilText, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out wire.SessionOutput
	if err := wire.ReadMsg(str, &out); err != nil || !out.GetEnd().GetDenied() {
		t.Fatalf("answer %v (%v), want a refusal", &out, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.events) != 1 {
		t.Fatalf("%d events recorded, want the refused connect", len(v.events))
	}
	ev := v.events[0]
	for field, val := range map[string]string{"target": ev.Target, "detail": ev.Detail, "actor": ev.Actor} {
		if c := testutil.TerminalControls(val); c != "" {
			t.Errorf("refused connect: %s %q carries %s; want terminal controls escaped or replaced", field, val, c)
		}
	}
}

// Hosts judge the names break-glass is tried with by pkg/safetext's copy
// of the coordinator's rule for user names, without asking it: the two
// must agree, or a host would refuse a real user, or take another
// spelling of a refused one.
func TestHostsJudgeUserNamesByTheCoordinatorsRule(t *testing.T) {
	names := []string{"tina", "tom", "t", "0", "tom.b", "a_b-c", "9lives", "a..b", "a-", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"", "Tom", "TOM", "tom ", " tom", "tom\t", "tom\n", ".tom", "-tom", "_tom", "local:tom", "tóm", "to m", "tom/x", "tom\x00"}
	for _, n := range names {
		if got, want := safetext.ValidUserName(n), auth.ValidName(n); got != want {
			t.Errorf("%q: hosts say %v, the coordinator %v", n, got, want)
		}
	}
}

// The technician port proves nothing until a SessionOpen's token checks,
// so one connection has only a few SessionOpens read at once: the rest
// wait in flow control, and 64 streams of 256 KiB on each of a source's
// connections are not a gigabyte held for anyone who reaches the port.
func TestATechnicianConnectionHasFewUnverifiedSessionOpensRead(t *testing.T) {
	_, ctx, dial, _ := limitServer(t, wire.ALPNTechnician)
	c := dial()
	defer c.CloseWithError(0, "")
	const streams, size = 64, wire.MaxSessionOpenSize
	var taken atomic.Int64
	var wg sync.WaitGroup
	startFrames(t, ctx, c, streams, size, time.Now().Add(4*time.Second), &taken, &wg)
	wg.Wait()
	// What is read is maxUnverifiedOpens SessionOpens and what flow
	// control lets the others send (a connection's window).
	const bound = 2*maxUnverifiedOpens*size + 1<<20
	if got := taken.Load(); got > bound {
		t.Fatalf("one unauthenticated technician connection had %d KiB of %d SessionOpens read at once; want at most %d KiB",
			got>>10, streams, bound>>10)
	}
}
