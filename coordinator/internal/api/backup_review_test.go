package api

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// stalledWriter is a client that reads the backup's first bytes and then
// stops reading (a pipe into a program waiting at a prompt, a stalled
// network): the handler's Write blocks until released.
type stalledWriter struct {
	h        http.Header
	once     sync.Once
	started  chan struct{}
	released chan struct{}
}

func (w *stalledWriter) Header() http.Header { return w.h }
func (w *stalledWriter) WriteHeader(int)     {}
func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.released
	return len(p), nil
}

// an admin runs 'outpost backup - | gpg ...' (or the network
// stalls) and the client stops reading. takeBackup streams the store to
// the network from inside one bbolt read transaction, and a bbolt read
// transaction holds the mmap lock: every write that makes the store grow
// waits for it, and every other write waits behind that one. Check-ins,
// enrolments and policy applies of the whole fleet stall for as long as
// the backup's reader does. (The review found it so; fixed.) Now: the snapshot is copied out
// (to a temporary file) before the body is streamed, so a slow reader
// never holds the store.
func TestBackupSlowReaderDoesNotStallStoreWrites(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: &notes{}, Signer: testSigner{priv}, Gatherer: reg,
		Logger: logging.Discard(), AdminToken: token, DataDir: t.TempDir()}, reg)
	if err != nil {
		t.Fatal(err)
	}

	w := &stalledWriter{h: http.Header{}, started: make(chan struct{}), released: make(chan struct{})}
	backupDone := make(chan struct{})
	go func() {
		defer close(backupDone)
		defer func() { recover() }() // ErrAbortHandler, if any
		r := httptest.NewRequest("POST", "/v1/backup", strings.NewReader(`{"plain":true}`))
		_ = a.takeBackup(w, r)
	}()
	t.Cleanup(func() { close(w.released); <-backupDone })
	select {
	case <-w.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the backup never wrote")
	}

	// Meanwhile the fleet goes on: records that make the store grow.
	wrote := make(chan error, 1)
	go func() {
		for i := range 8 {
			sha := fmt.Sprintf("%064x", i+1)
			if _, err := st.PutArtifact(store.Artifact{SHA256: sha, Size: 1, Name: "x", Chunks: make([]byte, 1<<20)}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("store writes are blocked for as long as a backup's client does not read: the backup streams from inside a read transaction")
	}
}

// an operator gives the backup's age identity (AGE-SECRET-KEY-1...,
// the second line of age-keygen's file) where a recipient belongs. The
// answer quotes the value back, truncated at 80 characters, and a whole
// secret key is 74: the private key that decrypts every backup is printed
// on the operator's terminal and in whatever logs the client's output.
// (The review found it so; fixed.) Now: a value that is an identity is refused without being quoted
// ("that is a private key: give its public key, age-keygen -y").
func TestBackupDoesNotQuoteAPrivateKeyGivenAsRecipient(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: &notes{}, Signer: testSigner{priv}, Gatherer: reg,
		Logger: logging.Discard(), AdminToken: token, DataDir: t.TempDir()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	id, _ := age.GenerateX25519Identity()
	code, out := call(t, srv, "POST", "/v1/backup", `{"recipients":["`+id.String()+`"]}`, token)
	if code != 400 {
		t.Fatalf("%d %v", code, out)
	}
	if msg := fmt.Sprint(out["error"]); strings.Contains(msg, id.String()) {
		t.Fatalf("the answer quotes the private key: %s", msg)
	}
}
