package quicsrv

import (
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// A check-in's answer carries the CA's certificates to a member that
// holds another (the CA renewed its certificate), not to one that holds
// the current one, nor to a version that does not say and could not take
// them; the member's fingerprint is recorded, for GET /v1/ca.
func TestCheckinCarriesTheCAsCertificatesToMembersWithAnother(t *testing.T) {
	s, st, _ := checkinServer(t)
	other := "sha256:" + "ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34"
	for _, tc := range []struct {
		name, fp string
		want     int
	}{
		{"holds an earlier one", other, len(s.ca.Chain())},
		{"holds the current one", s.ca.Fingerprint(), 0},
		{"does not say", "", 0},
	} {
		resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1", CaFingerprint: tc.fp})
		if got := len(resp.GetCheckin().GetCaCertificates()); got != tc.want {
			t.Errorf("%s: %d certificates, want %d", tc.name, got, tc.want)
		}
		m, err := st.Member("agent-1")
		if err != nil {
			t.Fatal(err)
		}
		if m.CAFingerprint != tc.fp {
			t.Errorf("%s: recorded %q", tc.name, m.CAFingerprint)
		}
	}
	// What is not a fingerprint is not recorded.
	s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1", CaFingerprint: "\x1b[31mred"})
	if m, _ := st.Member("agent-1"); m.CAFingerprint != "" {
		t.Errorf("recorded %q", m.CAFingerprint)
	}
}
