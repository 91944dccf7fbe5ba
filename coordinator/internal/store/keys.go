package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Gossip key rotation, in three phases so that an office never splits:
// install (members add the new key beside the old), use (the new key
// becomes the primary, the old one is still accepted), retire (only the new
// key). Each phase lasts long enough for every member that is online to
// check in.
const (
	RotationInstall = "install"
	RotationUse     = "use"
)

// StartKeyRotation begins replacing an office's gossip key with next. A
// rotation under way starts again with next: whoever knew its key (a
// member just removed, say) must not keep it.
func (s *Store) StartKeyRotation(office string, next []byte, now time.Time) (*Office, error) {
	return s.UpdateOffice(office, func(o *Office) error {
		startKeyRotation(o, next, now)
		return nil
	})
}

func startKeyRotation(o *Office, next []byte, now time.Time) {
	o.GossipKeys = [][]byte{next}
	o.Rotation, o.RotationSince = RotationInstall, now
}

// AdvanceKeyRotation moves an office's rotation on when its phase has
// lasted phase; it reports whether anything changed.
func (s *Store) AdvanceKeyRotation(office string, phase time.Duration, now time.Time) (bool, error) {
	changed := false
	_, err := s.UpdateOffice(office, func(o *Office) error {
		if o.Rotation == "" || now.Sub(o.RotationSince) < phase {
			return nil
		}
		changed = true
		switch o.Rotation {
		case RotationInstall:
			if len(o.GossipKeys) == 0 {
				o.Rotation = ""
				return nil
			}
			o.GossipKey, o.GossipKeys = o.GossipKeys[0], [][]byte{o.GossipKey}
			o.Rotation, o.RotationSince = RotationUse, now
		case RotationUse:
			o.GossipKeys, o.Rotation = nil, ""
		default:
			o.Rotation = ""
		}
		return nil
	})
	return changed, err
}

// DeleteMember forgets a member: its certificate no longer opens a
// connection, and its office's gossip key should be rotated so that it is
// cut off from its office too. Its runs, its host permission list and its
// per-artifact download figures go with it; its id is listed as removed
// (RemovedMembers) while its certificate may live.
func (s *Store) DeleteMember(id string) (*Member, error) {
	return s.RemoveMember(id, nil, time.Now())
}

// RemoveMember is DeleteMember that also starts replacing the gossip key
// of the member's office with nextKey, in the same transaction: a kill in
// between must not leave a removed member holding its office's key.
func (s *Store) RemoveMember(id string, nextKey []byte, now time.Time) (*Member, error) {
	var out *Member
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, err := get[Member](tx, bMembers, id)
		if err != nil {
			return fmt.Errorf("member %s: %w", id, err)
		}
		out = m
		if err := deleteRuns(tx, id); err != nil {
			return err
		}
		if b := tx.Bucket(bPermissions); b != nil {
			if err := b.Delete([]byte(HostScope(id))); err != nil {
				return err
			}
		}
		if err := deleteArtifactBytesOf(tx, id); err != nil {
			return err
		}
		if err := deleteMember(tx, m); err != nil {
			return err
		}
		if err := listRemoved(tx, id, now); err != nil {
			return err
		}
		if nextKey == nil {
			return nil
		}
		o, err := get[Office](tx, bOffices, m.Office)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		startKeyRotation(o, nextKey, now)
		return put(tx, bOffices, o.Name, o)
	})
	return out, err
}
