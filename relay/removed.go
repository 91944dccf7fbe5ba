package relay

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A member an admin removed (a stolen laptop) keeps a certificate that
// verifies under the CA until it ends, up to a year on. The coordinator
// refuses it at once; the relay, which checks content requests against
// the CA, learns the removed members at its check-ins and refuses them
// too, from a list kept on disk so that a relay restarted while the
// coordinator is away goes on refusing them.

// removedFile is the list the coordinator gave last (RemovedMembers).
const removedFile = "removed-members.pb"

// Bounds of a list, from the coordinator or the disk: a year of removals
// in the largest fleet is far below them.
const (
	maxRemoved      = 1 << 20
	maxMemberIDSize = 128
	maxRemovedBytes = 64 << 20
)

// errRemovedMember is a content request with the certificate of a member
// that was removed.
var errRemovedMember = errors.New("this member was removed from the fleet: its certificate no longer gets content; enrol the computer again if it is back in use")

// removedSet is a list of removed members, as the coordinator's version
// of it.
type removedSet struct {
	version uint64
	ids     map[string]struct{}
}

// newRemovedSet checks a list and makes the set of it.
func newRemovedSet(rm *wire.RemovedMembers) (*removedSet, error) {
	if n := len(rm.GetIds()); n > maxRemoved {
		return nil, fmt.Errorf("removed members: %d listed, more than %d", n, maxRemoved)
	}
	set := &removedSet{version: rm.GetVersion(), ids: make(map[string]struct{}, len(rm.GetIds()))}
	for _, id := range rm.GetIds() {
		if id == "" || len(id) > maxMemberIDSize {
			return nil, fmt.Errorf("removed members: an id of %d bytes", len(id))
		}
		set.ids[id] = struct{}{}
	}
	return set, nil
}

// has tells whether id is a removed member; a nil set has none.
func (s *removedSet) has(id string) bool {
	if s == nil {
		return false
	}
	_, ok := s.ids[id]
	return ok
}

// loadRemoved reads the list kept in dir; none kept is an empty set.
func loadRemoved(dir string) (*removedSet, error) {
	f, err := os.Open(filepath.Join(dir, removedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &removedSet{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRemovedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", removedFile, err)
	}
	if len(b) > maxRemovedBytes {
		return nil, fmt.Errorf("%s: more than %d bytes", removedFile, maxRemovedBytes)
	}
	return decodeRemoved(b)
}

func decodeRemoved(b []byte) (*removedSet, error) {
	var rm wire.RemovedMembers
	if err := wire.Unmarshal(b, &rm); err != nil {
		return nil, fmt.Errorf("%s: %w", removedFile, err)
	}
	return newRemovedSet(&rm)
}

// saveRemoved keeps rm in dir, atomically.
func saveRemoved(dir string, rm *wire.RemovedMembers) error {
	b, err := proto.Marshal(rm)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, removedFile), b, 0o600)
}
