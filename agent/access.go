package agent

import (
	"context"
	"path/filepath"
	"runtime"
	"time"

	"github.com/outposthq/outpost/agent/internal/session"
	"github.com/outposthq/outpost/pkg/wire"
)

var started = time.Now()

// startSessions builds the technician session server of this host.
func (a *Agent) startSessions() error {
	s, err := session.New(session.Config{DataDir: filepath.Join(a.cfg.DataDir, "sessions"), MemberID: a.id.ID},
		a.state, inventory{a}, a.log, a.reg)
	if err != nil {
		return err
	}
	a.sessions = s
	return nil
}

// onAccessPush takes the coordinator's technician pushes: revocations, and
// offers of brokered sessions, which the agent attaches with a stream of
// its own connection (nothing dials in to a host behind NAT).
func (a *Agent) onAccessPush(ctx context.Context, req *wire.Request) (*wire.Response, bool) {
	switch b := req.GetBody().(type) {
	case *wire.Request_Revocations:
		a.sessions.SetRevocations(b.Revocations)
		return nil, true
	case *wire.Request_SessionOffer:
		// The offer carries the current list: it applies before the session.
		a.sessions.SetRevocations(b.SessionOffer.GetRevocations())
		id := b.SessionOffer.GetSessionId()
		a.sessions.Go(func() { a.attachSession(ctx, id) })
		return nil, true
	}
	return nil, false
}

func (a *Agent) attachSession(ctx context.Context, id string) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	str, err := a.link.OpenStream(octx)
	cancel()
	if err != nil {
		a.log.Warn("attach technician session", "session", id, "err", err)
		return
	}
	if err := wire.WriteMsg(str, &wire.Request{Body: &wire.Request_SessionAttach{SessionAttach: &wire.SessionAttach{SessionId: id}}}); err != nil {
		str.CancelRead(1)
		str.Close()
		return
	}
	a.sessions.Serve(ctx, str, func() { str.CancelRead(0) })
	a.flushAudit(ctx)
}

// afterCheckin applies the revocation list of a check-in answer and sends
// the audit records the coordinator has not acknowledged.
func (a *Agent) afterCheckin(ctx context.Context, resp *wire.CheckinResponse) {
	a.sessions.SetRevocations(resp.GetRevocations())
	a.flushAudit(ctx)
}

// flushAudit sends the spooled audit records; they are forgotten only once
// the coordinator acknowledged them.
func (a *Agent) flushAudit(ctx context.Context) {
	recs := a.sessions.PendingAudit()
	if len(recs) == 0 || !a.link.Connected() {
		return
	}
	if len(recs) > 1000 {
		recs = recs[:1000]
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.link.Call(cctx, &wire.Request{Body: &wire.Request_Audit{Audit: &wire.AuditBatch{Records: recs}}}); err != nil {
		a.log.Debug("send audit records; kept for the next check-in", "records", len(recs), "err", err)
		return
	}
	a.sessions.AckAudit(recs)
}

// inventory describes this host to technicians with the view right.
type inventory struct{ a *Agent }

func (i inventory) Inventory() *wire.Inventory {
	a := i.a
	a.mu.Lock()
	office := a.office
	a.mu.Unlock()
	inv := &wire.Inventory{MemberId: a.id.ID, Hostname: a.cfg.Hostname, Office: office, Os: runtime.GOOS, Arch: runtime.GOARCH,
		Addresses: a.addresses(), Revision: a.state.Revision(), Version: Version, UptimeSeconds: int64(time.Since(started).Seconds())}
	for _, it := range a.state.Report().GetItems() {
		inv.Items = append(inv.Items, &wire.InventoryItem{Id: it.GetId(), Kind: it.GetKind(),
			Status: statusName(it.GetStatus()), Message: it.GetMessage()})
	}
	return inv
}

func statusName(s wire.ItemReport_Status) string {
	switch s {
	case wire.ItemReport_STATUS_COMPLIANT:
		return "compliant"
	case wire.ItemReport_STATUS_PENDING:
		return "pending"
	case wire.ItemReport_STATUS_FAILED:
		return "failed"
	case wire.ItemReport_STATUS_NOT_APPLICABLE:
		return "not_applicable"
	}
	return "unknown"
}
