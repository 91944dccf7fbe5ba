package state

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/safetext"
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
	return max(last, s.report.GetSeq(), s.seq)
}

// newestQueued reads the newest run on disk, or nil.
func (s *State) newestQueued() *wire.Report {
	seqs, _ := s.queued()
	for i := len(seqs) - 1; i >= 0; i-- {
		if r := s.readQueued(seqs[i]); r != nil {
			return r
		}
	}
	return nil
}

func (s *State) readQueued(seq uint64) *wire.Report {
	b, err := os.ReadFile(filepath.Join(s.queueDir(), queueName(seq)))
	if err != nil {
		return nil
	}
	var r wire.Report
	if wire.Unmarshal(b, &r) != nil || r.GetSeq() != seq {
		return nil
	}
	return &r
}

// MaxPending bounds the runs kept in memory while the disk does not take
// them (a full disk); beyond it the oldest are dropped, and counted.
const MaxPending = 64

// Enqueue numbers r, keeps it until acknowledged and returns how many old
// runs had to be dropped to stay within MaxQueued (MaxPending in memory).
// When the disk does not take it, r is kept in memory: check-ins carry it
// all the same, and it is written when the disk takes it (err is then a
// *PersistError).
func (s *State) Enqueue(r *wire.Report) (dropped int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.lastSeq() + 1
	s.seq, s.seqDirty = seq, true
	r.Seq = seq
	s.pending = append(s.pending, r)
	dropped, err = s.flushLocked()
	if over := len(s.pending) - MaxPending; over > 0 {
		clear(s.pending[:over])
		s.pending = s.pending[over:]
		dropped += over
	}
	return dropped, err
}

// flushLocked writes the run number given last and the runs kept in
// memory, oldest first, and keeps the queue on disk within MaxQueued.
// Call with s.mu held.
func (s *State) flushLocked() (dropped int, err error) {
	if !s.seqDirty && len(s.pending) == 0 {
		return 0, nil
	}
	// The number first: a crash must not hand the same number out twice.
	if s.seqDirty {
		if err := s.write(s.path("seq"), []byte(strconv.FormatUint(s.seq, 10)), 0o600); err != nil {
			return 0, s.noteLocked("queue", err)
		}
		s.seqDirty = false
	}
	for len(s.pending) > 0 {
		r := s.pending[0]
		b, err := proto.Marshal(r)
		if err == nil {
			err = s.write(filepath.Join(s.queueDir(), queueName(r.GetSeq())), b, 0o600)
		}
		if err != nil {
			return 0, s.noteLocked("queue", err)
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
	}
	s.noteLocked("queue", nil)
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

// CheckinRuns is what a check-in carries: the report, and up to n runs
// of the backlog before it, oldest first. After an outage longer than n
// runs those are the newest n, not the oldest: the coordinator keeps the
// last store.MaxRuns runs of a host and no run numbered below one it has,
// so the oldest with the report would leave a gap in the history it
// shows, and the report must be the current one (compliance, rollouts).
// Runs older than those never reach it; it would not keep them. The
// report and the backlog together take at most maxBytes (encoded): runs of
// many items with long messages, kept through an outage, would otherwise
// make a check-in larger than a message may be, and the agent could never
// check in again.
func (s *State) CheckinRuns(n, maxBytes int) (backlog []*wire.Report, report *wire.Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	runs, all := s.unackedLocked()
	if len(all) > 0 {
		all = all[:len(all)-1] // the newest travels as the report
	}
	report = fitReport(s.report, maxBytes)
	size := proto.Size(report)
	// Read from the newest back, so that a run that does not read leaves
	// room for an older one.
	for i := len(all) - 1; i >= 0 && len(backlog) < n; i-- {
		r := s.readRun(runs, all[i])
		if r == nil {
			continue
		}
		if size += proto.Size(r) + 8; size > maxBytes {
			break // its tag and length: 8 bytes are plenty
		}
		backlog = append(backlog, r)
	}
	slices.Reverse(backlog)
	return backlog, report
}

// fitReport is r, or when it is larger than maxBytes encoded a copy of it
// whose item messages are cut short, the longest first, to what fits: a
// policy of thousands of items failing with long messages (a hook's
// output) made a report larger than a message may be, and no check-in
// could be sent while they failed. Every item and its status is kept.
func fitReport(r *wire.Report, maxBytes int) *wire.Report {
	if r == nil || proto.Size(r) <= maxBytes {
		return r
	}
	r = proto.Clone(r).(*wire.Report)
	msgs := make([]string, len(r.GetItems()))
	lens := make([]int, len(msgs))
	for i, it := range r.GetItems() {
		msgs[i], lens[i] = it.GetMessage(), len(it.GetMessage())
		it.Message = ""
	}
	// What the messages may take: the rest, less their tags and lengths
	// (a few bytes each), and the lengths of the items that hold them.
	room := maxBytes - proto.Size(r) - 8*len(lens)
	if room <= 0 {
		return r
	}
	// The longest a message may be: the highest cap whose messages fit.
	slices.Sort(lens)
	limit, used := 0, 0
	for i, n := range lens {
		if rest := len(lens) - i; used+n*rest > room {
			limit = (room - used) / rest
			break
		}
		used += n
		limit = n
	}
	for i, it := range r.GetItems() {
		it.Message = safetext.Clip(msgs[i], limit)
	}
	return r
}

// unackedLocked returns the runs not acknowledged, by number (nil: on
// disk, read when sent), and their numbers, oldest first. Call with s.mu
// held.
func (s *State) unackedLocked() (map[uint64]*wire.Report, []uint64) {
	runs := map[uint64]*wire.Report{}
	seqs, _ := s.queued()
	for _, seq := range seqs {
		runs[seq] = nil // read when it is sent
	}
	for _, r := range s.pending {
		runs[r.GetSeq()] = r
	}
	return runs, slices.Sorted(maps.Keys(runs))
}

// readRun is run seq: in memory, or read from disk (nil if it does not
// read).
func (s *State) readRun(runs map[uint64]*wire.Report, seq uint64) *wire.Report {
	if r := runs[seq]; r != nil {
		return r
	}
	return s.readQueued(seq)
}

// Ack forgets the runs up to seq: the coordinator has them. It also
// writes what the disk did not take before, if it takes it now.
func (s *State) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = slices.DeleteFunc(s.pending, func(r *wire.Report) bool { return r.GetSeq() <= seq })
	if seq > s.lastSeq() {
		// The coordinator has a run numbered higher than any this agent
		// remembers (given while the disk was full, then a restart):
		// numbering goes on from there, or the next runs would be taken
		// for ones it has.
		s.seq, s.seqDirty = seq, true
	}
	seqs, err := s.queued()
	for _, q := range seqs {
		if q > seq {
			break
		}
		if rerr := os.Remove(filepath.Join(s.queueDir(), queueName(q))); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
			break
		}
	}
	// A failure here is told by the next Enqueue or SetReport, unless it
	// was told already.
	told := maps.Clone(s.failing)
	s.flushLocked()
	s.saveReportLocked()
	for what := range s.failing {
		if why, ok := told[what]; ok {
			s.failing[what] = why
		} else {
			delete(s.failing, what)
		}
	}
	return err
}
