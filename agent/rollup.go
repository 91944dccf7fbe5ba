package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// rollup carries an office's check-ins to the coordinator through one
// member, so that the coordinator hears from an office about once per
// interval instead of once per member.
//
// The office elects, without talking about it, the member with the lowest
// id among those that announce they reach the coordinator (gossip meta);
// relays would go first once they carry check-ins. Every other member
// signs its check-in with its own certificate key and hands it to that
// member over the office's encrypted stream transport; the roll-up member
// keeps the newest one of each member and sends them all with its own
// check-in, at its interval, or within a second or two of a report that
// is news (a new run). The coordinator answers each with an ack signed by
// the policy key, which travels back the same way; only then does the
// member forget the runs in its on-disk queue. Each member sends all its
// unacknowledged runs every time, so a roll-up member that dies loses
// nothing: the office elects the next one and the runs go again; the
// coordinator keeps each run once by its number.
//
// Members keep their own QUIC connection (idle but for pushes: the
// instant revision notice and technician sessions need it) and check in
// directly when the roll-up cannot do: the first time, when the
// coordinator asks for it in an ack (new gossip keys, another office,
// changed office settings) or by a push, when no ack came for three
// intervals, and every directEvery-th report as a safety net.
type rollup struct {
	a      *Agent
	verify *wire.CheckinVerifier // nil without a CA certificate
	// wake asks run to pass the pending check-ins on soon.
	wake chan struct{}

	mu sync.Mutex
	// As the roll-up member: the newest signed check-in of each member.
	pending map[string]heldCheckin
	// As a member reporting through another.
	direct bool // the coordinator asked for a direct check-in
	// skew is the coordinator's clock less this member's, as the answer
	// to the last direct check-in gave it (at most a second low), and
	// directAt that check-in's time by the coordinator's clock: an
	// acknowledgement signed before it is an old one played back.
	skew         time.Duration
	directAt     time.Time
	unackedSince time.Time // first report sent through a roll-up and not yet acknowledged
	// unackedSeq is the run that report carried: only an acknowledgement
	// that covers it is news, not an old one a peer plays back.
	unackedSeq uint64
	count      int // reports made; every directEvery-th is direct

	reports *prometheus.CounterVec
}

const (
	// directEvery: one report in so many is a direct check-in even when
	// the roll-up works (fresh office information, revocations).
	directEvery = 30
	// maxPending bounds the check-ins a roll-up member holds.
	maxPending = 5000
	// batchBytes bounds one batch; the rest goes with the next.
	batchBytes = 4 << 20
	// checkinMaxAge is how old a signed check-in the roll-up member passes
	// on; the coordinator has the same bound.
	checkinMaxAge = 10 * time.Minute
)

// heldCheckin is a member's signed check-in held to pass on, with what it
// says of itself: when it was signed, and the run and revision it tells.
type heldCheckin struct {
	sc       *wire.SignedCheckin
	signed   time.Time
	seq, rev uint64
}

// newer tells whether c was made after held, a check-in of the same
// member: signed later, or in the same second (signatures count seconds)
// telling of a newer run or revision.
func (c heldCheckin) newer(held heldCheckin) bool {
	if !c.signed.Equal(held.signed) {
		return c.signed.After(held.signed)
	}
	return c.seq > held.seq || c.seq == held.seq && c.rev > held.rev
}

func newRollup(a *Agent, reg prometheus.Registerer) (*rollup, error) {
	r := &rollup{a: a, wake: make(chan struct{}, 1), pending: map[string]heldCheckin{},
		count: rand.IntN(directEvery), // members' direct check-ins do not come all at once
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_rollup_reports_total",
			Help: "Reports and check-ins by path: direct (this member's report, checked in), rollup (this member's report, handed to the roll-up member), pass_on (a check-in made to pass on other members' reports), carried (other members' reports passed on), refused (from peers, did not verify)."},
			[]string{"path"}),
	}
	if a.id != nil {
		r.verify = wire.NewCheckinVerifier(func() *x509.CertPool { return tlsutil.CARoots(a.id.CAs(), nil) }, maxOfficeKnown)
	}
	return r, reg.Register(r.reports)
}

// run announces whether this member can carry the office's check-ins and
// passes pending ones on soon after news arrives.
func (r *rollup) run(ctx context.Context, every, delay time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var flush <-chan time.Time
	for {
		r.announce()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
			if flush == nil {
				flush = time.After(delay)
			}
		case <-flush:
			flush = nil
			if r.hasPending() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := r.a.checkin(cctx, true); err != nil {
					r.a.log.Debug("pass on the office's check-ins", "err", err)
				}
				cancel()
			}
		}
	}
}

// announce tells the office whether this member reaches the coordinator
// and so may be elected.
func (r *rollup) announce() {
	info := r.a.officeInfo()
	r.a.gossip.setRollup(info.GetRollup() && !info.GetRoaming() && r.a.link.Connected())
}

// elect names the office's roll-up member as this member sees the office;
// self says it is this member.
func (r *rollup) elect() (name string, self bool) {
	var cands []gossip.Peer
	for _, p := range r.a.gossip.peers() {
		if p.Meta.Rollup && (p.Meta.Role == "agent" || p.Meta.Role == "relay") {
			cands = append(cands, p)
		}
	}
	me := r.a.id.ID
	if r.a.link.Connected() {
		cands = append(cands, gossip.Peer{Name: me, Meta: gossip.Meta{Role: "agent"}})
	}
	if len(cands) == 0 {
		return "", false
	}
	sort.Slice(cands, func(i, j int) bool {
		if ri, rj := cands[i].Meta.Role == "relay", cands[j].Meta.Role == "relay"; ri != rj {
			return ri
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0].Name, cands[0].Name == me
}

// route is the member to hand this report to, or "" to check in
// directly, and then why.
func (r *rollup) route() (to, why string) {
	info := r.a.officeInfo()
	if info == nil || !info.GetRollup() || info.GetRoaming() {
		return "", "the office has no roll-up"
	}
	r.mu.Lock()
	r.count++
	switch {
	case r.direct:
		why = "the coordinator asked for a direct check-in"
	case r.count%directEvery == 0:
		why = "one report in " + strconv.Itoa(directEvery) + " is direct"
	case !r.unackedSince.IsZero() && time.Since(r.unackedSince) > 3*r.a.interval():
		why = "no acknowledgement through the roll-up for three intervals"
	}
	r.mu.Unlock()
	if why != "" {
		return "", why
	}
	to, self := r.elect()
	if to == "" {
		return "", "no member of the office can carry check-ins"
	}
	if self {
		return "", "this member carries the office's check-ins"
	}
	return to, ""
}

// send hands this member's check-in to the roll-up member.
func (r *rollup) send(to string, urgent bool) error {
	a := r.a
	req := a.checkinRequest(false)
	cert := a.id.Certificate()
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok || len(cert.Certificate) == 0 {
		return errNoSigner
	}
	// Signed in the coordinator's time, as this member last heard it: the
	// carrier and the coordinator refuse a check-in signed more than a
	// minute in their future, and an unwatched computer's clock drifts
	// that far within a month or two.
	sc, err := wire.SignCheckin(signer, cert.Certificate[0], a.id.ID, r.coordinatorNow(), req)
	if err == nil && proto.Size(sc) > wire.MaxCarriedCheckin {
		// The roll-up member would refuse it: straight to the coordinator.
		err = fmt.Errorf("check-in of %d bytes is larger than a roll-up member carries (%d)", proto.Size(sc), wire.MaxCarriedCheckin)
	}
	if err == nil {
		sc.Urgent = urgent
		var b []byte
		b, err = proto.Marshal(&wire.PeerMessage{From: a.id.ID, Body: &wire.PeerMessage_RollupReport{RollupReport: sc}})
		if err == nil {
			err = a.gossip.send(to, b)
		}
	}
	if err != nil {
		return err
	}
	r.reports.WithLabelValues("rollup").Inc()
	r.mu.Lock()
	if r.unackedSince.IsZero() {
		r.unackedSince, r.unackedSeq = time.Now(), reportSeq(req)
	}
	r.mu.Unlock()
	return nil
}

// reportSeq is the newest run a check-in carries (0: none).
func reportSeq(req *wire.CheckinRequest) uint64 {
	seq := req.GetReport().GetSeq()
	for _, b := range req.GetBacklog() {
		seq = max(seq, b.GetSeq())
	}
	return seq
}

type errString string

func (e errString) Error() string { return string(e) }

const errNoSigner = errString("the member key cannot sign")

// take keeps a peer's check-in to pass on: one the coordinator would take
// (signed by a member, recent, within the bounds of one check-in), and
// newer than the one held of that member. Anyone with the office key sees
// members' check-ins go by and can hand over an older one again; kept,
// it would replace the newest.
func (r *rollup) take(from string, sc *wire.SignedCheckin) {
	if r.verify == nil {
		return
	}
	var rep *wire.RollupReport
	var err error
	now := r.coordinatorNow()
	if size := proto.Size(sc); size > wire.MaxCarriedCheckin {
		// Checked before the signature: gossip carries messages of up to
		// 8 MiB, and one such check-in would make every check-in of this
		// member too large to send.
		err = fmt.Errorf("%d bytes, more than the %d carried", size, wire.MaxCarriedCheckin)
	} else if rep, err = r.verify.Verify(sc, now); err == nil {
		err = carriable(rep, now)
	}
	if err != nil {
		r.reports.WithLabelValues("refused").Inc()
		r.a.log.Warn("refused a check-in from an office peer", "peer", from, "err", err)
		r.a.reportPeer(claimed(from), "handed over a check-in that was refused", err.Error())
		return
	}
	c := heldCheckin{sc: sc, signed: time.Unix(rep.GetSignedUnix(), 0), seq: reportSeq(rep.GetCheckin()), rev: rep.GetCheckin().GetRevision()}
	id := rep.GetMemberId()
	r.mu.Lock()
	held, ok := r.pending[id]
	switch {
	case ok && !c.newer(held):
		r.mu.Unlock()
		r.a.log.Debug("an office peer handed over a check-in older than the one held: dropped", "peer", from, "member", id)
		return
	case ok || len(r.pending) < maxPending:
		r.pending[id] = c
	}
	r.mu.Unlock()
	if sc.GetUrgent() {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *rollup) hasPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) > 0
}

// carriable says why the coordinator would refuse a member's verified
// check-in (nil: it would not), so that the roll-up member does not hold
// it: too old or signed too far ahead (the coordinator's bounds), or
// beyond the bounds of one check-in.
func carriable(rep *wire.RollupReport, now time.Time) error {
	at := time.Unix(rep.GetSignedUnix(), 0)
	switch {
	case now.Sub(at) > checkinMaxAge:
		return errString("too old")
	case at.Sub(now) > time.Minute:
		return errString("signed in the future")
	case wire.CheckinTooLarge(rep.GetCheckin()) || len(rep.GetCheckin().GetRollup()) > 0:
		return errString("too large, or carrying others")
	}
	return nil
}

// batch is what this member's next check-in carries of other members.
func (r *rollup) batch() []*wire.SignedCheckin { return r.batchWithin(batchBytes) }

// batchWithin is batch in at most room bytes. A check-in gone too old
// while held is forgotten (the coordinator would refuse it, and its
// member sends its runs again); the rest waits for the next batch.
func (r *rollup) batchWithin(room int) []*wire.SignedCheckin {
	now := r.coordinatorNow()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*wire.SignedCheckin
	size := 0
	for id, c := range r.pending {
		if now.Sub(c.signed) > checkinMaxAge {
			delete(r.pending, id)
			continue
		}
		if n := proto.Size(c.sc); size+n <= room {
			size += n
			out = append(out, c.sc)
		}
	}
	return out
}

// carried forgets the check-ins the coordinator took and hands its
// answers back to their members.
func (r *rollup) carried(sent []*wire.SignedCheckin, acks []*wire.SignedRollupAck) {
	r.mu.Lock()
	for id, c := range r.pending {
		for _, s := range sent {
			if s == c.sc {
				delete(r.pending, id)
				break
			}
		}
	}
	r.mu.Unlock()
	r.reports.WithLabelValues("carried").Add(float64(len(sent)))
	for _, ack := range acks {
		if ack.GetMemberId() == r.a.id.ID {
			continue
		}
		go r.a.peers.tell(ack.GetMemberId(), "", &wire.PeerMessage{From: r.a.id.ID, Body: &wire.PeerMessage_RollupAck{RollupAck: ack}})
	}
}

// acked takes the coordinator's answer to a check-in this member handed
// to the roll-up.
func (r *rollup) acked(s *wire.SignedRollupAck) {
	a := r.a
	ack, err := wire.VerifyRollupAck(a.id.PolicyKey, s)
	if err != nil || ack.GetMemberId() != a.id.ID {
		a.log.Warn("refused a roll-up acknowledgement", "member", s.GetMemberId(), "err", err)
		return
	}
	r.mu.Lock()
	since := r.directAt
	r.mu.Unlock()
	if !since.IsZero() && ack.GetAtUnix() < since.Unix() {
		// Signed before this member's last direct check-in, which brought
		// everything an acknowledgement could: an old one, played back by
		// a peer to make this member check in directly again and again.
		a.log.Debug("refused a roll-up acknowledgement signed before the last direct check-in",
			"signed", time.Unix(ack.GetAtUnix(), 0), "checked_in", since)
		return
	}
	if err := a.state.Ack(ack.GetAckedSeq()); err != nil {
		a.log.Warn("forget acknowledged reports", "err", err)
	}
	r.mu.Lock()
	// An acknowledgement of runs before the one waiting is an old one
	// played back by a peer: it must not keep this member from checking in
	// directly when its reports are not getting through.
	if ack.GetAckedSeq() >= r.unackedSeq {
		r.unackedSince, r.unackedSeq = time.Time{}, 0
	}
	if ack.GetCheckinDirectly() && !r.direct {
		r.direct = true
		defer a.trigger()
	}
	r.mu.Unlock()
}

// directWanted tells whether the next report is to be a direct check-in
// because the coordinator asked for one.
func (r *rollup) directWanted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.direct
}

// checkinDirectly makes the next report a direct check-in.
func (r *rollup) checkinDirectly() {
	r.mu.Lock()
	r.direct = true
	r.mu.Unlock()
}

// clock notes the coordinator's time, serverUnix, as the answer to a
// direct check-in gives it, just received.
func (r *rollup) clock(serverUnix int64) {
	if serverUnix <= 0 {
		return // an answer without it: this member's clock stands in
	}
	// The answer was made before it arrived and its time is cut to the
	// second: the coordinator's clock as taken here is a little behind,
	// never ahead, so no acknowledgement made after is taken for older.
	skew := time.Until(time.Unix(serverUnix, 0))
	r.mu.Lock()
	r.skew = skew
	r.mu.Unlock()
}

// coordinatorNow is the coordinator's time as this member last heard it
// (its own before it heard any): check-ins it signs and carries are
// judged by the coordinator's clock.
func (r *rollup) coordinatorNow() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Now().Add(r.skew)
}

// checkedIn notes a direct check-in: it took every queued run and brought
// the office's news. passOn says it was made to pass on other members'
// check-ins rather than as a report of this member's.
func (r *rollup) checkedIn(passOn bool) {
	r.mu.Lock()
	r.direct = false
	r.unackedSince, r.unackedSeq = time.Time{}, 0
	r.directAt = time.Now().Add(r.skew)
	r.mu.Unlock()
	if passOn {
		r.reports.WithLabelValues("pass_on").Inc()
	} else {
		r.reports.WithLabelValues("direct").Inc()
	}
}
