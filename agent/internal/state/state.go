// Package state keeps what an agent must not lose across restarts: the
// signed policy it applies, the highest revision it ever accepted from each
// office (so nothing older is ever applied again, even after the agent has
// moved between offices and back), and its last report. Writes are atomic.
//
// A full (or failing) disk does not make the agent lie: the last report and
// the runs not yet acknowledged are held in memory first, so check-ins
// carry them, and are written when the disk takes them again
// (PersistError says which writes failed).
package state

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// ErrStale is returned for a policy no newer than the one held.
var ErrStale = errors.New("policy is not newer than the one held")

// ErrOwnPolicy is returned for an office's policy that says this agent has
// a policy of its own at that revision (OwnPolicyError says which).
var ErrOwnPolicy = errors.New("this agent has a policy of its own at this revision; it takes it from the coordinator")

// OwnPolicyError is an office-wide policy that lists this agent among
// those with a variant of their own: nothing is wrong with it, but it is
// not this agent's. Revision is the revision to fetch from the coordinator.
type OwnPolicyError struct {
	Office   string
	Revision uint64
}

func (e *OwnPolicyError) Error() string {
	return fmt.Sprintf("revision %d of office %s: %v", e.Revision, e.Office, ErrOwnPolicy)
}

func (e *OwnPolicyError) Is(target error) bool { return target == ErrOwnPolicy }

// State is the agent's persisted policy and report.
type State struct {
	dir string
	key ed25519.PublicKey

	mu      sync.Mutex
	signed  *wire.SignedPolicy
	policy  *wire.Policy
	prev    *wire.Policy // the policy accepted before this one, or nil
	report  *wire.Report
	highest map[string]uint64 // office → highest revision accepted

	// What the disk did not take (it was full): the report, and runs kept
	// here (at most MaxPending) until they are written or acknowledged.
	reportDirty bool
	pending     []*wire.Report
	seq         uint64            // the highest run number given out in this process
	seqDirty    bool              // seq is not on disk yet
	failing     map[string]string // what could not be written → why, to tell each failure once

	// setAsides are the damaged files Open set aside (SetAside).
	setAsides []string

	// write writes a file atomically (tests put a failing one in).
	write func(path string, data []byte, perm os.FileMode) error
}

// PersistError is a write of the state that failed: what was to be
// written is kept in memory (and carried by check-ins) and written again
// at the next save. Repeat is set when the previous attempt of the same
// write failed the same way, so that it is logged once, not every run.
type PersistError struct {
	What   string // "report" or "queue"
	Err    error
	Repeat bool
}

func (e *PersistError) Error() string { return e.Err.Error() }
func (e *PersistError) Unwrap() error { return e.Err }

// Repeated tells whether err is a PersistError already told: the same
// write failed the same way the time before.
func Repeated(err error) bool {
	var pe *PersistError
	return errors.As(err, &pe) && pe.Repeat
}

// noteLocked books how a write of what went; it returns a PersistError
// for a failure. Call with s.mu held.
func (s *State) noteLocked(what string, err error) error {
	if err == nil {
		delete(s.failing, what)
		return nil
	}
	// By the errno where there is one: the messages name temporary files
	// whose names change with every attempt.
	why := err.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		why = errno.Error()
	}
	repeat := s.failing[what] == why
	s.failing[what] = why
	return &PersistError{What: what, Err: err, Repeat: repeat}
}

// Open loads the state in dir. The policy on disk is verified again: a
// file edited by hand is not trusted.
func Open(dir string, key ed25519.PublicKey) (*State, error) {
	s := &State{dir: dir, key: key, highest: map[string]uint64{}, failing: map[string]string{}, write: fsutil.WriteFileAtomic}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open agent state: %w", err)
	}
	// What writes cut short by a kill left (a run is queued every
	// interval, so a laptop switched off hard now and then gathers them
	// for ever): nothing of the agent's writes here before Open returns.
	for _, d := range []string{dir, s.queueDir()} {
		fsutil.RemoveOld(d, fsutil.WriteLeftover, 0)
	}
	if b, err := os.ReadFile(s.path("policy.pb")); err == nil {
		var sp wire.SignedPolicy
		p, err := policyFile(key, b, &sp)
		switch {
		case errors.Is(err, errDamaged):
			// Nothing older comes in for it: highest.json, written
			// first, keeps the mark; the policy comes again from the
			// coordinator or a peer.
			s.setAside("policy.pb", err)
		case err != nil:
			return nil, fmt.Errorf("agent state: policy.pb: %w", err)
		default:
			s.signed, s.policy = &sp, p
			s.highest[p.GetOffice()] = p.GetRevision()
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	if b, err := os.ReadFile(s.path("highest.json")); err == nil {
		var h map[string]uint64
		if err := json.Unmarshal(b, &h); err != nil {
			// The marks of the policies held (current and previous) stay;
			// other offices' are lost, which is better than an agent that
			// never starts again.
			s.setAside("highest.json", err)
		}
		for o, r := range h {
			s.highest[o] = max(s.highest[o], r)
		}
	}
	if b, err := os.ReadFile(s.path("previous.pb")); err == nil {
		var sp wire.SignedPolicy
		if wire.Unmarshal(b, &sp) == nil {
			if p, err := wire.VerifyPolicy(key, &sp); err == nil {
				s.prev = p
				s.highest[p.GetOffice()] = max(s.highest[p.GetOffice()], p.GetRevision())
			}
		}
	}
	if b, err := os.ReadFile(s.path("report.pb")); err == nil {
		var r wire.Report
		if wire.Unmarshal(b, &r) == nil {
			s.report = &r
		}
	}
	// A run queued after the last report that reached the disk (which was
	// full when the report was saved) is the last report.
	if r := s.newestQueued(); r != nil && r.GetSeq() > s.report.GetSeq() {
		s.report = r
	}
	return s, nil
}

func (s *State) path(name string) string { return filepath.Join(s.dir, name) }

// errDamaged is a state file that is not what this agent wrote.
var errDamaged = errors.New("damaged")

// policyFile decodes and verifies policy.pb into sp. A file that does not
// decode, or whose signature by the pinned key does not verify, is
// damaged; one signed by another key is not (the agent's identity was
// replaced under its state: that is for an admin to look at).
func policyFile(key ed25519.PublicKey, b []byte, sp *wire.SignedPolicy) (*wire.Policy, error) {
	if err := wire.Unmarshal(b, sp); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if len(sp.GetPolicy()) == 0 {
		return nil, fmt.Errorf("%w: no policy in it", errDamaged)
	}
	p, err := wire.VerifyPolicy(key, sp)
	if errors.Is(err, wire.ErrBadSignature) && len(key) == ed25519.PublicKeySize &&
		(sp.GetKeyId() == "" || sp.GetKeyId() == wire.KeyID(key)) {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	return p, err
}

// setAside moves a damaged state file out of the way (name.damaged, for
// a look), and keeps what happened for SetAside.
func (s *State) setAside(name string, why error) {
	msg := fmt.Sprintf("%s is damaged (%v): set aside as %s.damaged", name, why, name)
	if err := os.Rename(s.path(name), s.path(name+".damaged")); err != nil {
		msg = fmt.Sprintf("%s is damaged (%v) and could not be set aside (%v): it is replaced at the next write", name, why, err)
	}
	s.setAsides = append(s.setAsides, msg)
}

// SetAside tells which state files Open found damaged and set aside, in
// words for a log.
func (s *State) SetAside() []string { return s.setAsides }

// Revision is the highest accepted revision, 0 before the first.
func (s *State) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy.GetRevision()
}

// Policy returns the accepted policy, or nil.
func (s *State) Policy() *wire.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// Signed returns the accepted signed policy, to hand to peers.
func (s *State) Signed() *wire.SignedPolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signed
}

// Shareable returns the accepted signed policy if peers may have it: an
// office-wide one, not one for this agent alone. Nil otherwise.
func (s *State) Shareable() *wire.SignedPolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy.GetAgent() != "" {
		return nil
	}
	return s.signed
}

// Accept verifies sp and, if it is for office (where the agent is now),
// for this agent (self: its member id) and not older than any revision of
// that office accepted before, makes it the policy to apply. A revision
// equal to the highest is accepted only when coming back from another
// office: it is the same signed document.
//
// A policy for one agent (a variant) is refused by every other; an
// office-wide policy that lists self among the agents with a variant is
// refused with an *OwnPolicyError, so that the agent fetches its own.
func (s *State) Accept(sp *wire.SignedPolicy, office, self string) (*wire.Policy, error) {
	s.mu.Lock()
	heldSigned, heldPolicy := s.signed, s.policy
	s.mu.Unlock()
	if heldSigned != nil && heldPolicy.GetOffice() == office &&
		bytes.Equal(sp.GetPolicy(), heldSigned.GetPolicy()) && bytes.Equal(sp.GetSignature(), heldSigned.GetSignature()) {
		// The policy this agent holds, told again by another peer: a
		// rollout brings each member several copies, and checking each
		// signature again was a good part of an office's CPU.
		return nil, fmt.Errorf("revision %d of office %s again: %w", heldPolicy.GetRevision(), office, ErrStale)
	}
	p, err := wire.VerifyPolicy(s.key, sp)
	if err != nil {
		return nil, err
	}
	if p.GetOffice() != office {
		return nil, fmt.Errorf("policy is for office %q, this agent is in %q", p.GetOffice(), office)
	}
	if p.GetAgent() != "" && p.GetAgent() != self {
		return nil, fmt.Errorf("policy is for agent %q alone, this is %q", p.GetAgent(), self)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.highest[office]
	// Equal to the highest is stale only when that revision is the one
	// held: a kill between the two writes below leaves the mark at N and
	// the policy at N-1, and N must still be taken when it comes again.
	same := s.policy.GetOffice() == office && s.policy.GetRevision() == held
	if p.GetRevision() < held || (p.GetRevision() == held && same) {
		return nil, fmt.Errorf("revision %d of office %s, highest accepted %d: %w", p.GetRevision(), office, held, ErrStale)
	}
	if p.GetAgent() == "" && slices.Contains(p.GetVariantAgents(), self) {
		return nil, &OwnPolicyError{Office: office, Revision: p.GetRevision()}
	}
	b, err := proto.Marshal(sp)
	if err != nil {
		return nil, err
	}
	highest := maps.Clone(s.highest)
	highest[office] = max(held, p.GetRevision())
	hb, err := json.Marshal(highest)
	if err != nil {
		return nil, err
	}
	// The high-water mark first: a crash between the two writes must not
	// let an older revision in later.
	if err := fsutil.WriteFileAtomic(s.path("highest.json"), hb, 0o600); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(s.path("policy.pb"), b, 0o600); err != nil {
		return nil, err
	}
	if s.signed != nil {
		// What the policy before named is kept on disk a while (content
		// garbage collection); without the file only until a restart.
		if pb, err := proto.Marshal(s.signed); err == nil {
			_ = fsutil.WriteFileAtomic(s.path("previous.pb"), pb, 0o600)
		}
		s.prev = s.policy
	}
	s.signed, s.policy, s.highest = sp, p, highest
	return p, nil
}

// Previous returns the policy accepted before the current one, or nil.
func (s *State) Previous() *wire.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prev
}

// RevisionIn is the revision held for office: the applied policy's if it is
// that office's, else 0 (so that the coordinator sends it).
func (s *State) RevisionIn(office string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy.GetOffice() != office {
		return 0
	}
	return s.policy.GetRevision()
}

// Report returns the last report, or nil.
func (s *State) Report() *wire.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report
}

// SetReport makes r the last run's report, then persists it. The report
// is the last one even when the write fails (a *PersistError): check-ins
// carry it, and the next save writes it.
func (s *State) SetReport(r *wire.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.report, s.reportDirty = r, true
	return s.saveReportLocked()
}

func (s *State) saveReportLocked() error {
	if !s.reportDirty {
		return nil
	}
	b, err := proto.Marshal(s.report)
	if err == nil {
		err = s.write(s.path("report.pb"), b, 0o600)
	}
	if err == nil {
		s.reportDirty = false
	}
	return s.noteLocked("report", err)
}
