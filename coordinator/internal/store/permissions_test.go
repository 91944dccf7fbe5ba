package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// permStore has office hq with the agent pc-7 (ag-07), users tina and
// olga, the group hq-techs of tina, and grants to all of them in the
// office's and the host's lists.
func permStore(t *testing.T) *Store {
	t.Helper()
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOffice(Office{Name: "hq"}); err != nil {
		t.Fatal(err)
	}
	tok := Token{ID: "t1", Hash: "h1", Office: "hq", Role: "agent", Uses: 1, Expires: time.Now().Add(time.Hour)}
	if err := s.CreateToken(tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll("h1", time.Now(), func(Token, Office) (Member, error) {
		return Member{ID: "ag-07", Hostname: "pc-7", Office: "hq", Home: "hq", Role: "agent"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"tina", "olga"} {
		if err := s.CreateUser(User{Name: u}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateGroup(Group{Name: "hq-techs", Members: []string{"tina"}}); err != nil {
		t.Fatal(err)
	}
	set := func(scope string, grants ...Grant) {
		if err := s.SetPermissions(scope, grants); err != nil {
			t.Fatal(err)
		}
	}
	set(OfficeScope("hq"),
		Grant{Subject: "group:hq-techs", Rights: []string{"view", "command"}},
		Grant{Subject: "user:olga", Rights: []string{"view"}},
		Grant{Subject: "user:tina", Rights: []string{"files"}, Deny: true})
	set(HostScope("ag-07"), Grant{Subject: "group:hq-techs", Rights: []string{"files"}})
	set(OfficeScope("paris"), Grant{Subject: "user:olga", Rights: []string{"view"}})
	return s
}

func mustPerms(t *testing.T, s *Store, scope string) []Grant {
	t.Helper()
	g, err := s.Permissions(scope)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A group's or a user's grants go with it, from every list: a group or
// user made later under the same name must not inherit them.
func TestDeletingAGroupOrUserTakesItsGrants(t *testing.T) {
	s := permStore(t)
	if err := s.DeleteGroup("hq-techs", time.Now()); err != nil {
		t.Fatal(err)
	}
	want := []Grant{{Subject: "user:olga", Rights: []string{"view"}}, {Subject: "user:tina", Rights: []string{"files"}, Deny: true}}
	if got := mustPerms(t, s, OfficeScope("hq")); !reflect.DeepEqual(got, want) {
		t.Errorf("office hq after deleting group hq-techs: %+v, want %+v", got, want)
	}
	if got := mustPerms(t, s, HostScope("ag-07")); len(got) != 0 {
		t.Errorf("host pc-7 after deleting group hq-techs: %+v, want none", got)
	}
	if err := s.CreateGroup(Group{Name: "hq-techs"}); err != nil {
		t.Fatal(err)
	}
	if got := mustPerms(t, s, OfficeScope("hq")); !reflect.DeepEqual(got, want) {
		t.Errorf("a new group hq-techs got grants: %+v", got)
	}

	if err := s.DeleteUser("olga"); err != nil {
		t.Fatal(err)
	}
	want = want[1:] // tina's deny stays
	if got := mustPerms(t, s, OfficeScope("hq")); !reflect.DeepEqual(got, want) {
		t.Errorf("office hq after deleting olga: %+v, want %+v", got, want)
	}
	if got := mustPerms(t, s, OfficeScope("paris")); len(got) != 0 {
		t.Errorf("office paris (deleted or never made, its list kept) after deleting olga: %+v, want none", got)
	}
	// A deny goes too: the user is gone, and one made later starts afresh.
	if err := s.DeleteUser("tina"); err != nil {
		t.Fatal(err)
	}
	if got := mustPerms(t, s, OfficeScope("hq")); len(got) != 0 {
		t.Errorf("office hq after deleting tina: %+v, want none", got)
	}
}

// RemoveGroup and RemoveUser say which lists lost which grants and which
// office's policy carries each list, for re-signing.
func TestRemoveSaysWhichListsLostGrants(t *testing.T) {
	s := permStore(t)
	lost, err := s.RemoveGroup("hq-techs", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []PermissionList{
		{Scope: "office/hq", Office: "hq", Grants: []Grant{{Subject: "group:hq-techs", Rights: []string{"view", "command"}}}},
		{Scope: "host/ag-07", Office: "hq", Host: "ag-07", Hostname: "pc-7", Grants: []Grant{{Subject: "group:hq-techs", Rights: []string{"files"}}}},
	}
	if !reflect.DeepEqual(lost, want) {
		t.Fatalf("lost:\n%+v\nwant:\n%+v", lost, want)
	}
	if lost[0].Label() != "office hq" || lost[1].Label() != "host pc-7" {
		t.Errorf("labels %q, %q", lost[0].Label(), lost[1].Label())
	}
	lost, err = s.RemoveUser("olga")
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 2 || lost[0].Scope != "office/hq" || lost[1].Scope != "office/paris" {
		t.Fatalf("olga's lists: %+v", lost)
	}
	if lost, err = s.RemoveUser("olga"); !errors.Is(err, ErrNotFound) || lost != nil {
		t.Fatalf("removing olga again: %v, %v", lost, err)
	}
	if _, err := s.RemoveGroup("hq-techs", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing hq-techs again: %v", err)
	}
	// A failed removal changes nothing.
	if got := mustPerms(t, s, OfficeScope("hq")); len(got) != 1 || got[0].Subject != "user:tina" {
		t.Fatalf("office hq: %+v", got)
	}
}

// A list changed by read, edit, write back is written only if it is still
// the list read: another admin's change in between is not undone.
func TestSetPermissionsIfRefusesAListChangedSinceRead(t *testing.T) {
	s := permStore(t)
	scope := OfficeScope("hq")
	read := PermissionsTag(mustPerms(t, s, scope))
	if read != PermissionsTag(mustPerms(t, s, scope)) {
		t.Fatal("the tag of one list differs between reads")
	}
	if PermissionsTag(nil) != PermissionsTag([]Grant{}) {
		t.Fatal("an unset list and an empty one have different tags")
	}
	// Another admin adds a grant.
	other := append(mustPerms(t, s, scope), Grant{Subject: "user:tom", Rights: []string{"view"}})
	otherTag, err := s.SetPermissionsIf(scope, other, []string{read})
	if err != nil || otherTag == read || otherTag != PermissionsTag(other) {
		t.Fatalf("first change: tag %q (read %q), %v", otherTag, read, err)
	}
	// This admin's change, made to the list read, is refused.
	mine := []Grant{{Subject: "user:olga", Rights: []string{"view"}}}
	_, err = s.SetPermissionsIf(scope, mine, []string{read})
	var ce *PermissionsChangedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || ce.Current != otherTag {
		t.Fatalf("a change to a list changed since: %v, want PermissionsChangedError with tag %s", err, otherTag)
	}
	if got := mustPerms(t, s, scope); !reflect.DeepEqual(got, other) {
		t.Fatalf("the refused change was written: %+v", got)
	}
	// Any of several tags, and no tag at all, as before.
	if _, err := s.SetPermissionsIf(scope, mine, []string{read, otherTag}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPermissionsIf(scope, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := mustPerms(t, s, scope); len(got) != 0 {
		t.Fatalf("cleared list: %+v", got)
	}
	// An unset list has the empty list's tag.
	if _, err := s.SetPermissionsIf(OfficeScope("new"), mine, []string{PermissionsTag(nil)}); err != nil {
		t.Fatal(err)
	}
}

func TestPermissionListsInOrder(t *testing.T) {
	s := permStore(t)
	lists, err := s.PermissionLists()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lists {
		got = append(got, l.Label())
	}
	if want := []string{"office hq", "office paris", "host pc-7"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lists %v, want %v", got, want)
	}
	if _, err := s.DeleteMember("ag-07"); err != nil {
		t.Fatal(err)
	}
	// A removed member's list goes with it.
	lists, _ = s.PermissionLists()
	got = nil
	for _, l := range lists {
		got = append(got, l.Label())
	}
	if want := []string{"office hq", "office paris"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lists once pc-7 is removed: %v, want %v", got, want)
	}
}

// A removed office's list goes with it: an office made again under the
// same name starts with no grants, not the old office's.
func TestRemovedOfficeTakesItsPermissionList(t *testing.T) {
	s := permStore(t)
	if err := s.CreateOffice(Office{Name: "annex"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPermissions(OfficeScope("annex"), []Grant{{Subject: "user:olga", Rights: []string{"command"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveOffice("annex", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOffice(Office{Name: "annex"}); err != nil {
		t.Fatal(err)
	}
	if g := mustPerms(t, s, OfficeScope("annex")); len(g) != 0 {
		t.Fatalf("office annex made again inherits %v", g)
	}
	if g := mustPerms(t, s, OfficeScope("hq")); len(g) != 3 {
		t.Fatalf("office hq's list changed: %v", g)
	}
}

// A manager's write checks the manage right in its own transaction: once
// the right is gone, by the list or by the group, nothing more is written.
func TestSetPermissionsAsChecksTheManagerInTheWrite(t *testing.T) {
	s := permStore(t)
	if err := s.CreateUser(User{Name: "lena"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(Group{Name: "hq-leads", Members: []string{"lena"}}); err != nil {
		t.Fatal(err)
	}
	office := OfficeScope("hq")
	leads := []Grant{{Subject: "group:hq-leads", Rights: []string{"manage"}}}
	if err := s.SetPermissions(office, leads); err != nil {
		t.Fatal(err)
	}
	lena := &Manager{User: "lena", Office: "hq"}
	withTom := append(append([]Grant(nil), leads...), Grant{Subject: "user:tom", Rights: []string{"view"}})
	if _, err := s.SetPermissionsAs(office, withTom, nil, lena); err != nil {
		t.Fatalf("a manager's write: %v", err)
	}
	// On a host of the office, by the office's list; a deny in the host's
	// own list takes the host out of lena's hands.
	host := HostScope("ag-01")
	onHost := &Manager{User: "lena", Office: "hq", Host: "ag-01"}
	deny := []Grant{{Subject: "user:lena", Rights: []string{"manage"}, Deny: true}}
	if _, err := s.SetPermissionsAs(host, deny, nil, onHost); err != nil {
		t.Fatalf("a manager's write to a host's list: %v", err)
	}
	if _, err := s.SetPermissionsAs(host, nil, nil, onHost); !errors.Is(err, ErrNotManager) {
		t.Fatalf("a write to a host whose list denies lena manage: %v", err)
	}
	// Out of the group: refused, and the list is as it was.
	if _, _, err := s.UpdateGroup("hq-leads", time.Now(), func(g *Group) error { g.Members = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPermissionsAs(office, leads, nil, lena); !errors.Is(err, ErrNotManager) {
		t.Fatalf("a write by a former manager: %v, want ErrNotManager", err)
	}
	if got := mustPerms(t, s, office); !reflect.DeepEqual(got, withTom) {
		t.Fatalf("the former manager's write landed: %+v", got)
	}
	// An admin's write (no manager) is not checked.
	if _, err := s.SetPermissionsAs(office, leads, nil, nil); err != nil {
		t.Fatal(err)
	}
}
