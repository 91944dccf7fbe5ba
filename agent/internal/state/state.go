// Package state keeps what an agent must not lose across restarts: the
// highest signed policy it accepted (so nothing older is ever applied
// again) and its last report. Writes are atomic.
package state

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// ErrStale is returned for a policy no newer than the one held.
var ErrStale = errors.New("policy is not newer than the one held")

// State is the agent's persisted policy and report.
type State struct {
	dir    string
	key    ed25519.PublicKey
	office string

	mu     sync.Mutex
	signed *wire.SignedPolicy
	policy *wire.Policy
	report *wire.Report
}

// Open loads the state in dir. The policy on disk is verified again: a
// file edited by hand is not trusted.
func Open(dir string, key ed25519.PublicKey, office string) (*State, error) {
	s := &State{dir: dir, key: key, office: office}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open agent state: %w", err)
	}
	if b, err := os.ReadFile(s.path("policy.pb")); err == nil {
		var sp wire.SignedPolicy
		if err := proto.Unmarshal(b, &sp); err != nil {
			return nil, fmt.Errorf("agent state: policy.pb is damaged: %w", err)
		}
		p, err := wire.VerifyPolicy(key, &sp)
		if err != nil {
			return nil, fmt.Errorf("agent state: policy.pb: %w", err)
		}
		s.signed, s.policy = &sp, p
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	if b, err := os.ReadFile(s.path("report.pb")); err == nil {
		var r wire.Report
		if proto.Unmarshal(b, &r) == nil {
			s.report = &r
		}
	}
	return s, nil
}

func (s *State) path(name string) string { return filepath.Join(s.dir, name) }

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

// Accept verifies sp, and persists it if it is for this office and newer
// than the one held.
func (s *State) Accept(sp *wire.SignedPolicy) (*wire.Policy, error) {
	p, err := wire.VerifyPolicy(s.key, sp)
	if err != nil {
		return nil, err
	}
	if p.GetOffice() != s.office {
		return nil, fmt.Errorf("policy is for office %q, this agent is in %q", p.GetOffice(), s.office)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.policy.GetRevision(); p.GetRevision() <= held {
		return nil, fmt.Errorf("revision %d, holding %d: %w", p.GetRevision(), held, ErrStale)
	}
	b, err := proto.Marshal(sp)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(s.path("policy.pb"), b, 0o600); err != nil {
		return nil, err
	}
	s.signed, s.policy = sp, p
	return p, nil
}

// Report returns the last report, or nil.
func (s *State) Report() *wire.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report
}

// SetReport persists the last run's report.
func (s *State) SetReport(r *wire.Report) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.path("report.pb"), b, 0o600); err != nil {
		return err
	}
	s.mu.Lock()
	s.report = r
	s.mu.Unlock()
	return nil
}
