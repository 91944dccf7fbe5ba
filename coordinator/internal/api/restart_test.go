package api

import (
	"crypto/ed25519"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// restarted starts a fresh API over the store a killed coordinator left
// (with another policy key, as it does not matter here), and runs what
// the coordinator runs at start.
func restarted(t *testing.T, st *store.Store) (*httptest.Server, *API) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: &notes{}, Signer: testSigner{priv}, Gatherer: reg,
		Logger: logging.Discard(), AdminToken: token}, reg)
	if err != nil {
		t.Fatal(err)
	}
	startUp(t, a)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, a
}

// startUp runs what the coordinator runs at start.
func startUp(t *testing.T, a *API) {
	t.Helper()
	if err := a.PublishFirstRevisions(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reconcile(); err != nil {
		t.Fatal(err)
	}
}
