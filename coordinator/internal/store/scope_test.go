package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestNamedPolicies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := open(t, path)
	if ps, err := s.NamedPolicies(); err != nil || len(ps) != 0 {
		t.Fatalf("empty store: %v, %v", ps, err)
	}
	if _, err := s.NamedPolicy("kiosks"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing policy: %v", err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NamedPolicy{Name: "kiosks", Priority: 5, Targets: Targets{Labels: []string{"kiosk"}}, YAML: "items: []\n", Applied: t0}
	if created, err := s.PutNamedPolicy(p); err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	p.Priority, p.Applied = 7, t0.Add(time.Hour)
	if created, err := s.PutNamedPolicy(p); err != nil || created {
		t.Fatalf("replace: %v, %v", created, err)
	}
	s.Close()
	s = open(t, path)
	got, err := s.NamedPolicy("kiosks")
	if err != nil || got.Priority != 7 || !got.Created.Equal(t0) || !got.Applied.Equal(t0.Add(time.Hour)) || !reflect.DeepEqual(got.Targets.Labels, []string{"kiosk"}) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if err := s.DeleteNamedPolicy("kiosks"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNamedPolicy("kiosks"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestVariantsGoWithTheirRevision(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	for _, o := range []string{"berlin", "paris"} {
		if err := s.CreateOffice(Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(office string, variants map[string][]byte) uint64 {
		t.Helper()
		p, err := s.PublishPolicy(office, "items: []\n", time.Now(), func(rev uint64) ([]byte, map[string][]byte, error) {
			return []byte("office"), variants, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return p.Revision
	}
	rev := publish("berlin", map[string][]byte{"ag-2": []byte("two"), "ag-1": []byte("one")})
	publish("paris", map[string][]byte{"ag-9": []byte("nine")})
	if ids, err := s.VariantMembers("berlin"); err != nil || !reflect.DeepEqual(ids, []string{"ag-1", "ag-2"}) {
		t.Fatalf("variant members: %v, %v", ids, err)
	}
	v, err := s.Variant("berlin", "ag-2")
	if err != nil || v.Revision != rev || string(v.Signed) != "two" {
		t.Fatalf("variant: %+v, %v", v, err)
	}
	// The next revision replaces the set: ag-2 has none any more.
	rev = publish("berlin", map[string][]byte{"ag-1": []byte("one again")})
	if _, err := s.Variant("berlin", "ag-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale variant kept: %v", err)
	}
	if v, err := s.Variant("berlin", "ag-1"); err != nil || v.Revision != rev || string(v.Signed) != "one again" {
		t.Fatalf("variant: %+v, %v", v, err)
	}
	// An office-wide apply without variants drops them all.
	if _, err := s.ApplyPolicy("berlin", "items: []\n", time.Now(), func(uint64) ([]byte, error) { return []byte("x"), nil }); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.VariantMembers("berlin"); len(ids) != 0 {
		t.Fatalf("variants after a plain apply: %v", ids)
	}
	// Removing an office removes its variants, and no other office's.
	if _, err := s.RemoveOffice("paris", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Variant("paris", "ag-9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("variant of a removed office: %v", err)
	}
}

// A change to a named policy and the revisions it gives are stored
// together or not at all.
func TestPublishNamedAllOrNone(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.CreateOffice(Office{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p := NamedPolicy{Name: "kiosks", YAML: "targets: {offices: [a]}\nitems: []\n", Applied: now, Targets: Targets{Offices: []string{"a"}}}
	failing := func(uint64) ([]byte, map[string][]byte, error) { return nil, nil, errors.New("boom") }
	if _, _, err := s.PublishNamed(NamedChange{Put: &p}, []Publication{{Office: "a", Build: failing}}, now); err == nil {
		t.Fatal("published with a failing build")
	}
	if _, err := s.NamedPolicy("kiosks"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the policy was stored without its revisions: %v", err)
	}
	build := func(rev uint64) ([]byte, map[string][]byte, error) { return []byte{byte(rev)}, nil, nil }
	created, ps, err := s.PublishNamed(NamedChange{Put: &p}, []Publication{{Office: "a", Build: build}}, now)
	if err != nil || !created || len(ps) != 1 || ps[0].Revision != 1 {
		t.Fatalf("publish: %v %+v %v", created, ps, err)
	}
	if _, _, err := s.PublishNamed(NamedChange{Delete: "kiosks"}, []Publication{{Office: "a", Build: failing}}, now); err == nil {
		t.Fatal("deleted with a failing build")
	}
	if _, err := s.NamedPolicy("kiosks"); err != nil {
		t.Fatalf("the policy was deleted without its revisions: %v", err)
	}
	if _, ps, err := s.PublishNamed(NamedChange{Delete: "kiosks"}, []Publication{{Office: "a", Build: build}}, now); err != nil || ps[0].Revision != 2 {
		t.Fatalf("delete: %+v %v", ps, err)
	}
	if _, err := s.NamedPolicy("kiosks"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still there after the delete: %v", err)
	}
}
