package quicsrv

import (
	"errors"
	"sync"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// After a restore from a backup the store is behind: its offices' last
// revisions are those of the backup's day, while members hold newer ones
// and refuse any revision that is not newer. For a while after a restore,
// a member that reports holding a revision above its office's last makes
// the coordinator sign the office's policy again above it.
const (
	// restoreCatchUp is how long after a restore reported revisions count.
	restoreCatchUp = 30 * 24 * time.Hour
	// maxRevisionLead bounds how far above its office's last revision a
	// member's report moves it: a member lying about its revision cannot
	// spend the office's revisions.
	maxRevisionLead = 1_000_000
	// raiseEvery rate-limits the raises of one office.
	raiseEvery = time.Minute
)

// revisionCatchUp is the state of that catching up.
type revisionCatchUp struct {
	until time.Time // zero: the store was not restored lately
	raise func(office string, above uint64) error
	mu    sync.Mutex
	last  map[string]time.Time // office → its last raise
	// raisedBy are the members that raised their office already: an
	// honest member needs one raise, after which the revision it gets is
	// its office's own; one lying about its revision gets no more.
	raisedBy map[string]bool
}

// SetRevisionRaise makes the server call raise (synchronously) when, after
// a restore, a member reports a revision above its office's last. raise
// must make the office's next revision come after above and publish it.
func (s *Server) SetRevisionRaise(raise func(office string, above uint64) error) {
	s.catchUp.raise = raise
	r, err := s.store.LastRestore()
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.log.Error("read when the store was restored", "err", err)
	default:
		s.catchUp.until = r.At.Add(restoreCatchUp)
		if time.Now().Before(s.catchUp.until) {
			s.log.Warn("the store was restored from a backup: offices' revisions move past what members report holding",
				"restored", r.At, "backup_made", r.BackupMade, "until", s.catchUp.until)
		}
	}
}

// caughtUp raises m's office's revision if m holds a newer one.
func (s *Server) caughtUp(m *store.Member, now time.Time) {
	c := &s.catchUp
	if c.raise == nil || c.until.IsZero() || now.After(c.until) || m.Revision == 0 {
		return
	}
	last, err := s.store.Revision(m.Office)
	if err != nil || m.Revision <= last {
		return
	}
	if m.Revision-last > maxRevisionLead {
		s.log.Warn("member reports a revision far above its office's; not taken", "member", m.ID, "office", m.Office,
			"reported", m.Revision, "office_revision", last)
		return
	}
	c.mu.Lock()
	if c.last == nil {
		c.last, c.raisedBy = map[string]time.Time{}, map[string]bool{}
	}
	if now.Sub(c.last[m.Office]) < raiseEvery || c.raisedBy[m.ID] {
		c.mu.Unlock()
		return
	}
	c.last[m.Office], c.raisedBy[m.ID] = now, true
	c.mu.Unlock()
	s.log.Warn("member holds a revision newer than its office's (the store was restored from a backup): signing the office's policy above it",
		"member", m.ID, "office", m.Office, "reported", m.Revision, "office_revision", last)
	if err := c.raise(m.Office, m.Revision); err != nil {
		s.log.Error("raise the office's revision", "office", m.Office, "err", err)
	}
}
