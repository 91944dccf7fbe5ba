package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Removing a member starts its office's key rotation in the same
// transaction: there is no moment, and so no kill, after which the member
// is gone and its office's key unchanged (the crash review found the two
// steps apart, and a removed laptop keeping the key).
func TestRemovedMemberAndItsOfficeKeyRotationAreOneStep(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	old := bytes.Repeat([]byte{1}, 32)
	if err := s.CreateOffice(Office{Name: "berlin", GossipKey: old}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(Token{ID: "t", Hash: "h", Office: "berlin", Uses: 1, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll("h", time.Now(), func(Token, Office) (Member, error) {
		return Member{ID: "ag-1", Office: "berlin", Home: "berlin", Role: "agent"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	next, now := bytes.Repeat([]byte{2}, 32), time.Now().UTC()
	m, err := s.RemoveMember("ag-1", next, now)
	if err != nil || m.ID != "ag-1" {
		t.Fatalf("RemoveMember: %v %v", m, err)
	}
	o, err := s.Office("berlin")
	if err != nil {
		t.Fatal(err)
	}
	if o.Rotation != RotationInstall || len(o.GossipKeys) != 1 || !bytes.Equal(o.GossipKeys[0], next) || !bytes.Equal(o.GossipKey, old) || !o.RotationSince.Equal(now) {
		t.Fatalf("office after the removal: rotation %q since %v, keys %d", o.Rotation, o.RotationSince, len(o.GossipKeys))
	}
	if _, err := s.Member("ag-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("member after the removal: %v", err)
	}
	if _, err := s.RemoveMember("ag-1", next, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove again: %v", err)
	}
}
