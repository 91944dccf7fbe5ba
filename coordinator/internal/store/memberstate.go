package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Two readers want a little of every member, often: each check-in the
// gossip seeds of its office (who is alive, at which address), and each
// Prometheus scrape the items of every agent's last report by status.
// Decoding the members for them cost each check-in its office's size and
// each scrape the fleet's. memberState keeps that little in memory,
// brought up to date by every write of a member (putMember, deleteMember)
// once its transaction commits.
//
// Handlers of transactions that commit one after the other may run in
// either order (bbolt runs them once the writer's lock is released), so
// each write is numbered when it is made, which is under that lock: a
// handler whose number is below the one a member's state has is older
// and changes nothing. A member removed keeps a small tombstone for that
// reason. Rolled-back writes (a bbolt Batch retries) run no handler.

// GossipPeer is what a member's office peers need to join it.
type GossipPeer struct {
	ID         string
	GossipAddr string
	LastSeen   time.Time
}

// ReportTally counts items of agents' last reports of one revision in one
// office, by status; Patches counts the patch items (ids patch/...) among
// them.
type ReportTally struct {
	Revision uint64
	Agents   int
	Items    map[string]int
	Patches  map[string]int
}

// memberSummary is what memberState keeps of one member.
type memberSummary struct {
	seq    uint64 // the write it is from
	gone   bool   // removed
	office string
	peer   GossipPeer
	// tally is an agent's last report, nil for a relay or an agent
	// without one (Agents is 1).
	tally *ReportTally
}

func summarize(m *Member) *memberSummary {
	s := &memberSummary{office: m.Office, peer: GossipPeer{ID: m.ID, GossipAddr: m.GossipAddr, LastSeen: m.LastSeen}}
	if m.Role == "relay" || m.Report == nil {
		return s
	}
	t := &ReportTally{Revision: m.Report.Revision, Agents: 1, Items: map[string]int{}, Patches: map[string]int{}}
	for _, it := range m.Report.Items {
		t.Items[it.Status]++
		if strings.HasPrefix(it.ID, "patch/") {
			t.Patches[it.Status]++
		}
	}
	s.tally = t
	return s
}

// memberState is the in-memory summary of every member.
type memberState struct {
	seq atomic.Uint64 // numbers writes of members

	mu      sync.RWMutex
	built   bool
	members map[string]*memberSummary
	// offices is each office's members, and tallies the sum of its
	// agents' reports by revision.
	offices map[string]map[string]*memberSummary
	tallies map[string]map[uint64]*ReportTally
}

// memberWritten keeps m's summary once tx commits; m nil: removed.
func memberWritten(tx *bolt.Tx, id string, m *Member) {
	v, ok := openStores.Load(tx.DB())
	if !ok {
		return
	}
	st := &v.(*Store).members
	sum := &memberSummary{gone: true}
	if m != nil {
		sum = summarize(m)
	}
	sum.seq = st.seq.Add(1) // under the writer's lock: in the order of the writes
	tx.OnCommit(func() { st.apply(id, sum) })
}

func (st *memberState) apply(id string, sum *memberSummary) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.built {
		return // build reads it from the file
	}
	old := st.members[id]
	if old != nil && old.seq >= sum.seq {
		return
	}
	if old != nil && !old.gone {
		st.remove(id, old)
	}
	st.members[id] = sum
	if !sum.gone {
		st.add(id, sum)
	}
}

func (st *memberState) add(id string, sum *memberSummary) {
	if st.offices[sum.office] == nil {
		st.offices[sum.office] = map[string]*memberSummary{}
	}
	st.offices[sum.office][id] = sum
	if sum.tally == nil {
		return
	}
	byRev := st.tallies[sum.office]
	if byRev == nil {
		byRev = map[uint64]*ReportTally{}
		st.tallies[sum.office] = byRev
	}
	t := byRev[sum.tally.Revision]
	if t == nil {
		t = &ReportTally{Revision: sum.tally.Revision, Items: map[string]int{}, Patches: map[string]int{}}
		byRev[sum.tally.Revision] = t
	}
	t.Agents++
	for k, n := range sum.tally.Items {
		t.Items[k] += n
	}
	for k, n := range sum.tally.Patches {
		t.Patches[k] += n
	}
}

func (st *memberState) remove(id string, sum *memberSummary) {
	if ms := st.offices[sum.office]; ms != nil {
		delete(ms, id)
		if len(ms) == 0 {
			delete(st.offices, sum.office)
		}
	}
	if sum.tally == nil {
		return
	}
	byRev := st.tallies[sum.office]
	t := byRev[sum.tally.Revision]
	if t == nil {
		return
	}
	t.Agents--
	for k, n := range sum.tally.Items {
		if t.Items[k] -= n; t.Items[k] == 0 {
			delete(t.Items, k)
		}
	}
	for k, n := range sum.tally.Patches {
		if t.Patches[k] -= n; t.Patches[k] == 0 {
			delete(t.Patches, k)
		}
	}
	if t.Agents == 0 {
		delete(byRev, sum.tally.Revision)
		if len(byRev) == 0 {
			delete(st.tallies, sum.office)
		}
	}
}

// summaries is the store's memberState, read from the file the first time it is
// asked for. It is read in a write transaction, so that no write is
// under way: every write numbered until then is in the file or was
// rolled back, and every later one is applied.
func (s *Store) summaries() (*memberState, error) {
	st := &s.members
	st.mu.RLock()
	built := st.built
	st.mu.RUnlock()
	if built {
		return st, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.built {
			return nil
		}
		seq := st.seq.Load()
		members, offices, tallies := map[string]*memberSummary{}, map[string]map[string]*memberSummary{}, map[string]map[uint64]*ReportTally{}
		st.members, st.offices, st.tallies = members, offices, tallies
		err := tx.Bucket(bMembers).ForEach(func(k, v []byte) error {
			var m Member
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode %s/%s: %w", bMembers, k, err)
			}
			sum := summarize(&m)
			sum.seq = seq
			members[m.ID] = sum
			st.add(m.ID, sum)
			return nil
		})
		if err != nil {
			st.members, st.offices, st.tallies = nil, nil, nil
			return err
		}
		st.built = true
		return nil
	})
	return st, err
}

// GossipPeers are the members of office with a gossip address that were
// seen at since or later, in no order.
func (s *Store) GossipPeers(office string, since time.Time) ([]GossipPeer, error) {
	st, err := s.summaries()
	if err != nil {
		return nil, err
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	var out []GossipPeer
	for _, sum := range st.offices[office] {
		if sum.peer.GossipAddr != "" && !sum.peer.LastSeen.Before(since) {
			out = append(out, sum.peer)
		}
	}
	return out, nil
}

// ReportTallies counts the items of every office's agents' last reports
// by status, by office and by the revision each report is of.
func (s *Store) ReportTallies() (map[string][]ReportTally, error) {
	st, err := s.summaries()
	if err != nil {
		return nil, err
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := make(map[string][]ReportTally, len(st.tallies))
	for office, byRev := range st.tallies {
		for _, t := range byRev {
			c := ReportTally{Revision: t.Revision, Agents: t.Agents, Items: make(map[string]int, len(t.Items)), Patches: make(map[string]int, len(t.Patches))}
			for k, n := range t.Items {
				c.Items[k] = n
			}
			for k, n := range t.Patches {
				c.Patches[k] = n
			}
			out[office] = append(out[office], c)
		}
	}
	return out, nil
}
