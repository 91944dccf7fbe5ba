package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOfficesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := open(t, path)
	if err := s.CreateOffice(Office{Name: "berlin", Mode: "direct"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOffice(Office{Name: "berlin"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate office: got %v, want ErrExists", err)
	}
	s.Close()
	s = open(t, path)
	o, err := s.Office("berlin")
	if err != nil || o.Mode != "direct" {
		t.Fatalf("after reopen: %+v, %v", o, err)
	}
	if _, err := s.Office("paris"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing office: got %v", err)
	}
}

func TestEnrollTokenRules(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Now()
	if err := s.CreateOffice(Office{Name: "berlin"}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []Token{
		{ID: "two", Hash: "h-two", Office: "berlin", Uses: 2, Expires: now.Add(time.Hour)},
		{ID: "old", Hash: "h-old", Office: "berlin", Uses: 5, Expires: now.Add(-time.Second)},
	} {
		if err := s.CreateToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	issue := func(tk Token, o Office) (Member, error) {
		n++
		return Member{ID: "m" + string(rune('0'+n)), Office: o.Name, Role: tk.Role}, nil
	}
	for i := range 2 {
		if _, _, err := s.Enroll("h-two", now, issue); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	var ee *EnrollError
	for name, hash := range map[string]string{"exhausted": "h-two", "expired": "h-old", "unknown": "nope"} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := s.Enroll(hash, now, issue); !errors.As(err, &ee) {
				t.Fatalf("got %v, want an EnrollError", err)
			}
		})
	}
	members, _ := s.Members("berlin")
	if len(members) != 2 {
		t.Fatalf("%d members, want 2", len(members))
	}
	if err := s.DeleteOffice("berlin"); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete with members: got %v, want ErrConflict", err)
	}
}

func TestRevisionsNeverGoBack(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	build := func(rev uint64) ([]byte, error) { return []byte{byte(rev)}, nil }
	if err := s.CreateOffice(Office{Name: "o"}); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		p, err := s.ApplyPolicy("o", "items: []", time.Now(), build)
		if err != nil || p.Revision != want {
			t.Fatalf("apply: revision %v, %v; want %d", p, err, want)
		}
	}
	if err := s.DeleteOffice("o"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOffice(Office{Name: "o"}); err != nil {
		t.Fatal(err)
	}
	p, err := s.ApplyPolicy("o", "items: []", time.Now(), build)
	if err != nil || p.Revision != 4 {
		t.Fatalf("recreated office: revision %v, %v; want 4", p, err)
	}
	failing := func(uint64) ([]byte, error) { return nil, errors.New("boom") }
	if _, err := s.ApplyPolicy("o", "x", time.Now(), failing); err == nil {
		t.Fatal("failed build was stored")
	}
	if p, _ := s.Policy("o"); p.Revision != 4 {
		t.Fatalf("after failed apply: revision %d, want 4", p.Revision)
	}
}

// A change that reaches several offices is stored for all of them or for
// none.
func TestPublishPoliciesAllOrNone(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	for _, o := range []string{"a", "b"} {
		if err := s.CreateOffice(Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	build := func(rev uint64) ([]byte, map[string][]byte, error) { return []byte{byte(rev)}, nil, nil }
	ps, err := s.PublishPolicies([]Publication{{Office: "a", YAML: "items: []", Build: build}, {Office: "b", YAML: "items: []", Build: build}}, time.Now())
	if err != nil || len(ps) != 2 || ps[0].Office != "a" || ps[1].Office != "b" || ps[0].Revision != 1 || ps[1].Revision != 1 {
		t.Fatalf("published %+v, %v", ps, err)
	}
	failing := func(uint64) ([]byte, map[string][]byte, error) { return nil, nil, errors.New("boom") }
	for name, pubs := range map[string][]Publication{
		"a build fails":     {{Office: "a", Build: build}, {Office: "b", Build: failing}},
		"an office is gone": {{Office: "a", Build: build}, {Office: "gone", Build: build}},
	} {
		if _, err := s.PublishPolicies(pubs, time.Now()); err == nil {
			t.Fatalf("%s: published", name)
		}
		for _, o := range []string{"a", "b"} {
			if p, _ := s.Policy(o); p.Revision != 1 {
				t.Fatalf("%s: office %s at revision %d, want 1 (nothing stored)", name, o, p.Revision)
			}
		}
	}
}

// An action filter takes the action and its kinds, and nothing else that
// merely starts with the same letters.
func TestAuditActionFilter(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	for i, a := range []string{"exec", "exec.end", "executor", "user.create", "user.update", "shell.end"} {
		if err := s.AppendAudit(AuditEvent{At: at.Add(time.Duration(i) * time.Millisecond), Actor: "tina", Action: a, Allowed: true}); err != nil {
			t.Fatal(err)
		}
	}
	for filter, want := range map[string]string{
		"exec":     "exec.end exec",
		"exec.end": "exec.end",
		"user":     "user.update user.create",
		"shell":    "shell.end",
		"":         "shell.end user.update user.create executor exec.end exec",
		"ex":       "",
	} {
		evs, err := s.Audit(AuditFilter{Action: filter})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Action)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("action %q: got %v, want %s", filter, got, want)
		}
	}
}

// A host's spool arrives late with its own, older times: it does not hide
// the newer events that arrived before it from a filter by time.
func TestAuditSinceSeesPastLateArrivals(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := s.AppendAudit(AuditEvent{At: now.Add(-time.Minute), Actor: "admin", Action: "office.create", Allowed: true}); err != nil {
		t.Fatal(err)
	}
	// Then a host that was offline for a day sends what it kept.
	var late []AuditEvent
	for i := range 50 {
		late = append(late, AuditEvent{At: now.Add(-24*time.Hour + time.Duration(i)*time.Second), Actor: "tina", Action: "exec", Allowed: true, Source: "ag-1", ID: fmt.Sprint(i)})
	}
	if err := s.AppendAudit(late...); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Audit(AuditFilter{Since: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "office.create" {
		t.Fatalf("since an hour ago: %+v", evs)
	}
}
