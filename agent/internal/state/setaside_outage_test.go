package state

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
	"google.golang.org/protobuf/proto"
)

// A damaged state file (a disk error, an edit by hand) does not stop the
// agent for good: it is set aside, said so, and the agent takes its
// policy again from the coordinator or its peers, still refusing anything
// older than it accepted before.
func TestDamagedStateFileIsSetAsideAndRollbackStillRefused(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	sign := func(rev uint64) *wire.SignedPolicy {
		sp, err := wire.SignPolicy(priv, &wire.Policy{Office: "berlin", Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	flipped := func(b []byte) []byte {
		b = append([]byte(nil), b...)
		b[len(b)-20] ^= 1 // inside the key id or signature: it decodes, it does not verify
		return b
	}
	tests := []struct {
		name   string
		file   string
		damage func([]byte) []byte
	}{
		{"policy.pb that does not decode", "policy.pb", func([]byte) []byte { return []byte{0xff, 0xff, 0xff, 0xff} }},
		{"policy.pb cut to nothing", "policy.pb", func([]byte) []byte { return nil }},
		{"policy.pb with a bit flipped", "policy.pb", flipped},
		{"highest.json that does not decode", "highest.json", func(b []byte) []byte { return b[:len(b)/2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, pub)
			if err != nil {
				t.Fatal(err)
			}
			for _, rev := range []uint64{4, 5} {
				if _, err := s.Accept(sign(rev), "berlin", self); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, tt.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tt.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(dir, pub)
			if err != nil {
				t.Fatalf("a damaged %s stops the agent for good: %v", tt.file, err)
			}
			if got := s2.SetAside(); len(got) != 1 || !strings.Contains(got[0], tt.file) {
				t.Fatalf("set aside %q, want %s named", got, tt.file)
			}
			if _, err := os.Stat(path + ".damaged"); err != nil {
				t.Fatalf("the damaged file is not kept aside: %v", err)
			}
			if _, err := s2.Accept(sign(4), "berlin", self); !errors.Is(err, ErrStale) {
				t.Fatalf("revision 4 after revision 5 and a damaged %s: %v, want refused as stale", tt.file, err)
			}
			if _, err := s2.Accept(sign(5), "berlin", self); err != nil && tt.file == "policy.pb" {
				t.Fatalf("revision 5, sent again, is refused: %v; the agent would hold no policy", err)
			}
			if s2.Revision() != 5 {
				t.Fatalf("holds revision %d, want 5", s2.Revision())
			}
			if s3, err := Open(dir, pub); err != nil || len(s3.SetAside()) != 0 {
				t.Fatalf("the next start: %v, set aside %q", err, s3.SetAside())
			}
		})
	}
}

// After an outage longer than a check-in carries, the check-in carries the
// current report and the runs just before it: the coordinator, which keeps
// the last store.MaxRuns (20) runs of a host and no run below one it has,
// then shows the host's current state at once and a history without a gap.
// (It took the oldest runs and the newest: a history of runs from hours
// apart.)
func TestALongOutageSendsTheCurrentReportAndTheRunsBeforeIt(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	const runs = 3*wire.MaxCheckinBacklog + 10
	for i := range runs {
		r := &wire.Report{Revision: uint64(i + 1)}
		if _, err := s.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		if err := s.SetReport(r); err != nil {
			t.Fatal(err)
		}
	}
	backlog, report := s.CheckinRuns(wire.MaxCheckinBacklog, wire.MaxMessageSize)
	if report.GetSeq() != runs {
		t.Fatalf("the check-in's report is run %d, want the newest, %d", report.GetSeq(), runs)
	}
	if len(backlog) != wire.MaxCheckinBacklog {
		t.Fatalf("%d runs of the backlog, want %d", len(backlog), wire.MaxCheckinBacklog)
	}
	// The coordinator, as its store keeps runs: the backlog, then the
	// report, each above the acknowledged one, the last 20 kept.
	var acked uint64
	var kept []uint64
	for _, r := range append(backlog, report) {
		if r.GetSeq() <= acked {
			continue
		}
		acked = r.GetSeq()
		kept = append(kept, r.GetSeq())
	}
	kept = kept[len(kept)-20:]
	for i, seq := range kept {
		if want := uint64(runs - 19 + i); seq != want {
			t.Fatalf("the coordinator's last 20 runs: %v; want %d to %d", kept, runs-19, runs)
		}
	}
	if err := s.Ack(acked); err != nil {
		t.Fatal(err)
	}
	if backlog, _ := s.CheckinRuns(wire.MaxCheckinBacklog, wire.MaxMessageSize); len(backlog) != 0 {
		t.Fatalf("after the acknowledgement %d runs are still sent", len(backlog))
	}
}

// Runs of many items with long messages kept through an outage (64 of
// them) made a check-in larger than a message may be: the coordinator
// refused it, no acknowledgement came, and the agent could never check in
// again. The report and the runs before it that fit are carried, the
// newest first kept.
func TestACheckinOfLargeRunsStaysWithinItsBytes(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("a failing hook's output; ", 40) // about 1 KiB
	const runs = wire.MaxCheckinBacklog + 1
	for i := range runs {
		r := &wire.Report{Revision: uint64(i + 1)}
		for j := range 100 {
			r.Items = append(r.Items, &wire.ItemReport{Id: fmt.Sprintf("package:app-%d", j), Message: msg})
		}
		if _, err := s.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		if err := s.SetReport(r); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 2 << 20
	backlog, report := s.CheckinRuns(wire.MaxCheckinBacklog, limit)
	size := proto.Size(report)
	for _, r := range backlog {
		size += proto.Size(r)
	}
	if size > limit {
		t.Fatalf("the check-in's runs take %d bytes, more than %d", size, limit)
	}
	if report.GetSeq() != runs || len(backlog) == 0 || backlog[len(backlog)-1].GetSeq() != runs-1 {
		t.Fatalf("carried the report %d and %d runs ending with %d; want the newest and those just before it",
			report.GetSeq(), len(backlog), backlog[len(backlog)-1].GetSeq())
	}
	if len(backlog) == wire.MaxCheckinBacklog {
		t.Fatalf("all %d runs carried in %d bytes: the test's runs are too small to show the bound", len(backlog), size)
	}
}
