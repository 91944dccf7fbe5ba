package state

import (
	"crypto/ed25519"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

func TestQueueKeepsRunsUntilAckedAcrossRestarts(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r := &wire.Report{Revision: uint64(i)}
		if _, err := s.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) {
			t.Fatalf("run %d numbered %d", i, r.Seq)
		}
	}
	if got := backlogOf(s, 10); len(got) != 4 || got[0].Seq != 1 || got[3].Seq != 4 {
		t.Fatalf("backlog %v, want runs 1-4", got)
	}
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the unacknowledged runs and never reuses a number,
	// even once everything was acknowledged.
	s, err = Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := backlogOf(s, 10); len(got) != 2 || got[0].Seq != 3 {
		t.Fatalf("after restart: backlog %v, want runs 3-4", got)
	}
	if err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	r := &wire.Report{}
	if _, err := s.Enqueue(r); err != nil || r.Seq != 6 {
		t.Fatalf("next run numbered %d (%v), want 6", r.Seq, err)
	}
}

func TestQueueIsBounded(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for range MaxQueued + 10 {
		n, err := s.Enqueue(&wire.Report{})
		if err != nil {
			t.Fatal(err)
		}
		dropped += n
	}
	if dropped != 10 {
		t.Fatalf("dropped %d, want 10", dropped)
	}
	if got := backlogOf(s, MaxQueued); len(got) != MaxQueued-1 || got[0].Seq != 11 {
		t.Fatalf("backlog of %d starting at %d", len(got), got[0].GetSeq())
	}
}

// backlogOf is the backlog a check-in of s carries, up to n runs.
func backlogOf(s *State, n int) []*wire.Report {
	b, _ := s.CheckinRuns(n, wire.MaxMessageSize)
	return b
}
