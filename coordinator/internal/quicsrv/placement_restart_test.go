package quicsrv

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/api"
	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

type placementSigner struct{ key ed25519.PrivateKey }

func (s placementSigner) Sign(p *wire.Policy) ([]byte, error) {
	sp, err := wire.SignPolicy(s.key, p)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(sp)
}

type placementNotes struct{}

func (placementNotes) NotifyRevision(string, uint64)     {}
func (placementNotes) NotifyRevisions(map[string]uint64) {}

const placementToken = "opa_test_token_that_is_long_enough_0123456789"

// a check-in that moves an agent (a new office by address, or a
// new hostname, which counts as a move) stores the member in one bbolt
// transaction (record, quicsrv.go) and only then calls the placement hook
// (api.MemberPlaced), which publishes the agent's variant when a named
// policy targets it. A kill between the two leaves the move stored and the
// variant unpublished. After the restart the agent's next check-in finds
// nothing moved (the store already has the new hostname/office), so the
// hook is never called again, and nothing at start re-places members: the
// agent runs the office-wide policy, not the one targeted at it, until
// some unrelated change republishes the office.
// The API's Reconcile, run at start, publishes it.
// placementCoordinator is a store with office berlin (a policy of its own,
// and policy "kiosk" for the computer named kiosk-1 or kiosk-2) and agent-1
// (pc-1). start starts one coordinator process over it: the QUIC server
// with the API as its placement hook, or without (hooked=false: the
// process is killed before any hook runs).
func placementCoordinator(t *testing.T) (*store.Store, func(hooked bool) *Server) {
	t.Helper()
	caDir, dbPath := t.TempDir(), filepath.Join(t.TempDir(), "store.db")
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	if err := st.CreateOffice(store.Office{Name: "berlin", Mode: "direct", CheckinInterval: time.Minute, Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(store.Token{ID: "tok", Hash: "hash", Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll("hash", now, func(_ store.Token, o store.Office) (store.Member, error) {
		return store.Member{ID: "agent-1", Hostname: "pc-1", Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	start := func(hooked bool) *Server {
		authority, err := ca.LoadOrCreate(caDir, nil, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{}, authority, st, nil, nil, logging.Discard(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		a, err := api.New(api.Deps{Store: st, Notifier: placementNotes{}, Signer: placementSigner{priv}, Gatherer: reg,
			Logger: slog.New(slog.DiscardHandler), AdminToken: placementToken}, reg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.PublishFirstRevisions(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Reconcile(); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(a)
		t.Cleanup(srv.Close)
		put := func(path, body string) {
			req, _ := http.NewRequest("PUT", srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+placementToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				t.Fatalf("PUT %s: %d", path, resp.StatusCode)
			}
		}
		if hooked {
			s.SetPlacementHook(a.MemberPlaced)
		} else {
			put("/v1/offices/berlin/policy", "items:\n  - kind: registry\n    path: /etc/app.conf\n    name: mode\n    value: desk\n")
			put("/v1/policies/kiosk", "targets: {agents: [kiosk-1, kiosk-2]}\nitems:\n  - kind: registry\n    path: /etc/app.conf\n    name: mode\n    value: kiosk\n")
		}
		return s
	}
	return st, start
}

func TestCheckinMoveStoredBeforeAKillGetsItsVariantAtStart(t *testing.T) {
	st, start := placementCoordinator(t)
	checkin := func(s *Server) {
		resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "kiosk-1", Revision: 1})
		if err := resp.AsError(); err != nil {
			t.Fatal(err)
		}
	}

	// The renaming check-in is stored; the process dies before the hook.
	checkin(start(false))
	// Restart; the agent checks in again.
	checkin(start(true))

	p, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Variant("berlin", "agent-1")
	if err != nil || v.Revision != p.Revision {
		t.Fatalf("agent-1 is now kiosk-1, which policy kiosk targets, but has no variant at berlin's revision %d (%+v, %v): it runs the office-wide policy",
			p.Revision, v, err)
	}
}

// the same at enrolment. enroll (quicsrv.go) stores the new
// member (store.Enroll) and then calls the placement hook; a kill between
// the two loses the answer, and the agent enrols again with the same token
// and key: that takes the EnrollAgain path, which never calls the hook.
// The new computer, which policy kiosk targets by name, runs the
// office-wide policy.
// Reconcile publishes it at start, and the placement hook now runs on
// the retried enrolment too.
func TestEnrolmentStoredBeforeAKillGetsItsVariant(t *testing.T) {
	st, start := placementCoordinator(t)
	now := time.Now()
	if err := st.CreateToken(store.Token{ID: "tok2", Hash: placementHash("secret-2"), Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 5, Created: now}); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kiosk-2"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := &wire.EnrollRequest{Token: "secret-2", Hostname: "kiosk-2", Role: wire.Role_ROLE_AGENT, Csr: csr}
	enrol := func(s *Server) {
		if err := s.enroll(req, "192.0.2.20").AsError(); err != nil {
			t.Fatal(err)
		}
	}
	enrol(start(false)) // stored; killed before the hook and the answer
	enrol(start(true))  // the agent retries after the restart

	ms, err := st.Members("berlin")
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, m := range ms {
		if m.Hostname == "kiosk-2" {
			id = m.ID
		}
	}
	if id == "" {
		t.Fatalf("kiosk-2 is not a member of berlin: %v", ms)
	}
	p, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Variant("berlin", id)
	if err != nil || v.Revision != p.Revision {
		t.Fatalf("kiosk-2 (%s), which policy kiosk targets, enrolled but has no variant at berlin's revision %d (%+v, %v): it runs the office-wide policy",
			id, p.Revision, v, err)
	}
}

func placementHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
