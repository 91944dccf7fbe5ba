package auth

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// Every refresh (each 10-minute access token of a console or CLI user)
// stores a new refresh token record; the spent one stays, marked used, for
// replay detection. Kept once expired, the bucket would grow by every
// refresh of every user for as long as the coordinator lives, and every
// logout, replay check, password change and user removal decodes the whole
// bucket inside a write transaction: issuing tokens deletes the expired
// ones, once an hour.
//
// One technician, one working day a day for a week, then a new sign-in:
// all but that sign-in's token expired days ago and should be gone.
func TestExpiredRefreshTokensArePruned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.KDF = testKDF
	s, err := New(cfg, st, key, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	s.SetClock(c.now)
	addUser(t, st, "tina", "correct horse battery", "")

	const days, refreshesPerDay = 7, 48 // 8 hours of 10-minute access tokens
	for d := 0; d < days; d++ {
		tok, err := s.Login("tina", "correct horse battery", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < refreshesPerDay; i++ {
			c.add(cfg.AccessTTL)
			if tok, err = s.Refresh(tok.RefreshToken, "192.0.2.1"); err != nil {
				t.Fatalf("day %d refresh %d: %v", d, i, err)
			}
		}
		c.add(24*time.Hour - refreshesPerDay*cfg.AccessTTL)
	}
	// The next morning: every token of the week ended at least 12 hours ago.
	if _, err := s.Login("tina", "correct horse battery", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := 0
	if err := db.View(func(tx *bolt.Tx) error {
		stored = tx.Bucket([]byte("refresh_tokens")).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("refresh tokens stored after %d days of one user: %d (1 is live)", days, stored)
	if stored > 2 {
		t.Fatalf("%d refresh tokens kept, %d of them expired: nothing prunes them (about %d a year per active user, forever)",
			stored, stored-1, 48*250)
	}
}
