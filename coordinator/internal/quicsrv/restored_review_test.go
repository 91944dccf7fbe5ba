package quicsrv

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// in the 30 days after a restore, one member of an office (a
// stolen laptop, any enrolled computer) reports at each check-in a
// revision just above its office's last, up to maxRevisionLead ahead. Each
// report makes the coordinator sign the office's policy again, and every
// agent of the office runs it: one member makes its whole office re-run
// policy every minute for a month. An honest member never needs a second
// raise: once its office was raised past what it holds, the revision it
// then receives is the office's own. (The review found it so; fixed.) Now: a member moves its office's
// revision once per restore (or only to a revision the coordinator could
// have issued), so a lying member costs at most one extra revision.
func TestOneMemberCannotRepublishItsOfficeEveryMinute(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOffice(store.Office{Name: "hq"}); err != nil {
		t.Fatal(err)
	}
	sign := func(uint64) ([]byte, error) { return nil, nil }
	if _, err := st.ApplyPolicy("hq", "items: []", time.Now(), sign); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.MarkRestored(store.Restored{At: now.Add(-time.Hour), BackupMade: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	republished := 0
	s := &Server{store: st, log: logging.Discard()}
	s.SetRevisionRaise(func(office string, above uint64) error {
		if _, err := st.RaiseRevision(office, above); err != nil {
			return err
		}
		// The API's RaiseRevision signs the office's policy again.
		if _, err := st.ApplyPolicy(office, "items: []", time.Now(), sign); err != nil {
			return err
		}
		republished++
		return nil
	})
	for i := range 60 { // an hour of check-ins, one a minute
		last, err := st.Revision("hq")
		if err != nil {
			t.Fatal(err)
		}
		s.caughtUp(&store.Member{ID: "ag-liar", Office: "hq", Revision: last + maxRevisionLead}, now.Add(time.Duration(i)*time.Minute))
	}
	if republished > 1 {
		last, _ := st.Revision("hq")
		t.Fatalf("one member made its office's policy be signed again %d times in an hour (office now at revision %d); every agent of the office ran each", republished, last)
	}
}
