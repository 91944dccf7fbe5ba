package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// offlineSource is the coordinator's credential exchange over a link that
// may be down: offline, a call waits for the link until its context ends,
// as member.Client.Call does, then says the coordinator is unreachable.
type offlineSource struct {
	sts     *stsSource
	offline atomic.Bool
	calls   atomic.Int64
}

func (s *offlineSource) FileServer(ctx context.Context) (*wire.FileServerResponse, error) {
	s.calls.Add(1)
	if s.offline.Load() {
		<-ctx.Done()
		return nil, errors.New("coordinator is not reachable (127.0.0.1:8027)")
	}
	return s.sts.FileServer(ctx)
}

// setCredentialTimeout shortens how long one credential fetch may take, for
// the test.
func setCredentialTimeout(tb testing.TB, d time.Duration) {
	tb.Helper()
	was := credentialTimeout
	credentialTimeout = d
	tb.Cleanup(func() { credentialTimeout = was })
}

// errHung is openWithin's answer for an Open that did not return within a
// bound only a hang crosses.
var errHung = errors.New("Open hung: a fetch waited for file-server credentials for as long as the coordinator is away")

// openWithin opens hash and reads it whole, giving up with errHung.
func openWithin(u *Upstream, hash string) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rc, _, err := u.Open(context.Background(), hash)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(30 * time.Second):
		return nil, errHung
	}
}

// The credentials have expired and the coordinator is out of reach (its
// link waits for a connection as long as the caller lets it). The
// relay's fetches have no deadline of their own (a pinned artifact's
// pre-stage waits for nobody), so a fetch asked for credentials for as
// long as the coordinator stayed away: a client got no answer at all, and
// pre-staging stopped without a word. Now each try is bounded and says
// why it failed, the callers that come while one try has just failed get
// its error without asking again, and the first try after the
// coordinator is back succeeds.
func TestExpiredCredentialsWithTheCoordinatorAwayFailClearly(t *testing.T) {
	setCredentialTimeout(t, 200*time.Millisecond)
	m := testutil.StartMinIO(t)
	m.MakeBucket(t, bucket)
	data := []byte("an artifact read while the coordinator comes and goes")
	hash := put(t, m.Client(t), bucket, data)

	src := &offlineSource{sts: &stsSource{m: m, bucket: func() string { return bucket }, endpoint: func() string { return m.Endpoint }}}
	u, clock := newUpstream(t, src)
	if got, err := openWithin(u, hash); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("with the coordinator up: %v", err)
	}

	src.offline.Store(true)
	clock.advance(16 * time.Minute) // past the 15-minute lifetime
	before := src.calls.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := openWithin(u, hash)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil || errors.Is(err, errHung) {
			t.Fatalf("a read with expired credentials and the coordinator away: %v", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "file server credentials") || !strings.Contains(msg, "not reachable") {
			t.Fatalf("error %q: want it to say that no file server credentials came, and why", msg)
		}
	}
	if n := src.calls.Load() - before; n != 1 {
		t.Fatalf("8 reads at once asked the unreachable coordinator %d times, want once", n)
	}

	// Back: the first read after the pause between tries gets fresh
	// credentials, by itself.
	src.offline.Store(false)
	clock.advance(retryAfterFailure)
	if got, err := openWithin(u, hash); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the coordinator came back: %v", err)
	}
}
