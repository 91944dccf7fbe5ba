package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// MaxQueued bounds the runs kept for the coordinator while it is out of
// reach (about eight hours at the default two-minute interval); beyond it
// the oldest are dropped, and counted.
const MaxQueued = 256

// The report queue: every run gets the next number and is kept on disk
// until the coordinator says it has it, so that runs made while the
// coordinator was out of reach reach it later — once each: it keeps a run
// by its number, however often it is sent.

func (s *State) queueDir() string { return s.path("queue") }

func queueName(seq uint64) string { return fmt.Sprintf("%020d.pb", seq) }

// queued lists the numbers of the runs on disk, oldest first.
func (s *State) queued() ([]uint64, error) {
	entries, err := os.ReadDir(s.queueDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".pb")
		if !ok {
			continue
		}
		if seq, err := strconv.ParseUint(n, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// lastSeq is the highest run number ever given.
func (s *State) lastSeq() uint64 {
	var last uint64
	if b, err := os.ReadFile(s.path("seq")); err == nil {
		last, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if seqs, _ := s.queued(); len(seqs) > 0 {
		last = max(last, seqs[len(seqs)-1])
	}
	return max(last, s.report.GetSeq())
}

// Enqueue numbers r, keeps it until acknowledged and returns how many old
// runs had to be dropped to stay within MaxQueued.
func (s *State) Enqueue(r *wire.Report) (dropped int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.lastSeq() + 1
	// The number first: a crash must not hand the same number out twice.
	if err := fsutil.WriteFileAtomic(s.path("seq"), []byte(strconv.FormatUint(seq, 10)), 0o600); err != nil {
		return 0, err
	}
	r.Seq = seq
	b, err := proto.Marshal(r)
	if err != nil {
		return 0, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(s.queueDir(), queueName(seq)), b, 0o600); err != nil {
		return 0, err
	}
	seqs, err := s.queued()
	if err != nil {
		return 0, err
	}
	for len(seqs) > MaxQueued {
		if err := os.Remove(filepath.Join(s.queueDir(), queueName(seqs[0]))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return dropped, err
		}
		seqs = seqs[1:]
		dropped++
	}
	return dropped, nil
}

// Backlog returns up to n unacknowledged runs older than the newest,
// oldest first.
func (s *State) Backlog(n int) []*wire.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs, _ := s.queued()
	if len(seqs) > 0 {
		seqs = seqs[:len(seqs)-1] // the newest travels as the report
	}
	var out []*wire.Report
	for _, seq := range seqs {
		if len(out) == n {
			break
		}
		b, err := os.ReadFile(filepath.Join(s.queueDir(), queueName(seq)))
		if err != nil {
			continue
		}
		var r wire.Report
		if proto.Unmarshal(b, &r) == nil && r.GetSeq() == seq {
			out = append(out, &r)
		}
	}
	return out
}

// Ack forgets the runs up to seq: the coordinator has them.
func (s *State) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs, err := s.queued()
	if err != nil {
		return err
	}
	for _, q := range seqs {
		if q > seq {
			break
		}
		if err := os.Remove(filepath.Join(s.queueDir(), queueName(q))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
