package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A revoked token enrols nothing more, while a member's retry of an
// enrolment it made before still finds it; revoking is per office and
// idempotent. Tokens that ended more than TokenKeep ago go when a token is
// created; an id taken already is refused.
func TestTokenRevocationAndAgeing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, o := range []string{"berlin", "paris"} {
		if err := s.CreateOffice(Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []Token{
		{ID: "live", Hash: "h-live", Office: "berlin", Uses: 5, Expires: now.Add(time.Hour), Created: now},
		{ID: "ended", Hash: "h-ended", Office: "berlin", Uses: 5, Expires: now.Add(-time.Hour), Created: now.Add(-2 * time.Hour)},
	} {
		if err := s.CreateToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(tk Token, o Office) (Member, error) {
		return Member{ID: "ag-1", Office: o.Name, Role: "agent", KeyHash: "key-1", Token: tk.ID}, nil
	}
	if _, _, err := s.Enroll("h-live", now, issue); err != nil {
		t.Fatal(err)
	}

	if _, err := s.RevokeToken("paris", "live", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke another office's token: %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeToken("berlin", "nope", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke an unknown token: %v, want ErrNotFound", err)
	}
	for i := range 2 {
		tok, err := s.RevokeToken("berlin", "live", now.Add(time.Duration(i)*time.Minute))
		if err != nil || !tok.Revoked.Equal(now) || tok.Used != 1 {
			t.Fatalf("revoke #%d: %+v, %v; want revoked at %v, used once", i+1, tok, err, now)
		}
	}
	var ee *EnrollError
	if _, _, err := s.Enroll("h-live", now, issue); !errors.As(err, &ee) || !strings.Contains(fmt.Sprint(err), "was revoked at 2026-11-01T12:00:00Z") {
		t.Fatalf("enrol with a revoked token: %v", err)
	}
	if m, _, err := s.EnrollAgain("h-live", "key-1"); err != nil || m.ID != "ag-1" {
		t.Fatalf("the retry of an enrolment made before the revocation: %v, %v", m, err)
	}

	// Within TokenKeep both stay listed; past it, a new token takes them.
	ids := func() []string {
		ts, err := s.Tokens("berlin")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tk := range ts {
			out = append(out, tk.ID)
		}
		slices.Sort(out)
		return out
	}
	if err := s.CreateToken(Token{ID: "soon", Hash: "h-soon", Office: "berlin", Uses: 1, Expires: now.Add(TokenKeep), Created: now.Add(TokenKeep - 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []string{"ended", "live", "soon"}) {
		t.Fatalf("tokens within the keep: %v", got)
	}
	if err := s.CreateToken(Token{ID: "later", Hash: "h-later", Office: "paris", Uses: 1, Expires: now.Add(TokenKeep + 2*time.Hour), Created: now.Add(TokenKeep + time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []string{"soon"}) {
		t.Fatalf("tokens past the keep: %v, want the ended and the revoked one gone", got)
	}
	if _, _, err := s.Enroll("h-ended", now, issue); !errors.As(err, &ee) || !strings.Contains(fmt.Sprint(err), "not known") {
		t.Fatalf("enrol with a deleted token: %v", err)
	}
	if err := s.CreateToken(Token{ID: "soon", Hash: "h-other", Office: "paris", Uses: 1, Expires: now.Add(TokenKeep), Created: now.Add(TokenKeep)}); !errors.Is(err, ErrExists) {
		t.Fatalf("a token id taken already: %v, want ErrExists", err)
	}
	if _, _, err := s.Enroll("h-soon", now, issue); err != nil {
		t.Fatalf("the first token with the id was replaced: %v", err)
	}
}
