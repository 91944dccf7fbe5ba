package quicsrv

import (
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Who joined the fleet, with which token, is in the audit log. A computer
// named for an office before it enrolled goes there whatever token it
// uses, so a token that leaked from one office reaches the computers
// named for another: the record says so when it happens, where an admin
// looks (outpost audit --action member.enrol).
func TestEnrolmentsAreAuditedAndSayWhenATokenOfAnotherOfficeWasUsed(t *testing.T) {
	s, st, _ := checkinServer(t)
	withAuth(t, s, st)
	now := time.Now()
	if err := st.CreateOffice(store.Office{Name: "kiosk", Mode: "direct", CheckinInterval: time.Minute, Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(store.Token{ID: "tok-kiosk", Hash: placementHash("kiosk-secret"), Office: "kiosk", Role: "agent", Expires: now.Add(time.Hour), Uses: 5, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddComputers("berlin", []string{"pc-17"}, now); err != nil {
		t.Fatal(err)
	}
	enrol := func(hostname string) {
		t.Helper()
		key, err := tlsutil.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := tlsutil.NewCSR(key, hostname)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.enroll(&wire.EnrollRequest{Token: "kiosk-secret", Hostname: hostname, Role: wire.Role_ROLE_AGENT, Csr: csr}, "192.0.2.30").AsError(); err != nil {
			t.Fatal(err)
		}
	}
	enrol("kiosk-3")
	enrol("pc-17")
	evs, err := st.Audit(store.AuditFilter{Action: "member.enrol"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d enrolments audited, want 2: %+v", len(evs), evs)
	}
	steered, plain := evs[0], evs[1] // newest first
	if plain.Actor != "token tok-kiosk" || !strings.Contains(plain.Detail, "kiosk-3 enrolled into office kiosk") || strings.Contains(plain.Detail, "named for") {
		t.Fatalf("an enrolment with its own office's token: %+v", plain)
	}
	if !strings.Contains(steered.Detail, "pc-17 enrolled into office berlin with token tok-kiosk of office kiosk") || !strings.Contains(steered.Detail, "named for berlin") {
		t.Fatalf("an enrolment steered by a pre-registered hostname: %+v", steered)
	}
}
