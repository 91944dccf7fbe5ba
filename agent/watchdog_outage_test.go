package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/freeport"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/wire"
)

// An item whose content is not cached fetches it, and with no relay (or
// none answering) the fetch asks the coordinator for a presigned URL
// through the link, which waits for a connection until its context ends.
// A coordinator away for longer than hang_limit (a WAN outage of an hour)
// must not get a healthy agent taken for hung: the wait is bounded
// (coordinatorWait) and the fetch fails in time, the run going on. Here
// the limit is 2 s, the bound 500 ms, and nothing answers at the
// coordinator's address.
func TestARunWaitingForAnUnreachableCoordinatorIsNoHang(t *testing.T) {
	defer func(was time.Duration) { coordinatorWait = was }(coordinatorWait)
	coordinatorWait = 500 * time.Millisecond
	away, err := freeport.Get("127.0.0.1", false, true)
	if err != nil {
		t.Fatal(err)
	}
	link, err := member.NewClient(relayTestIdentity(t, newRelayTestCA(t)), away, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	link.SetBackoff(50*time.Millisecond, 200*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go link.Run(ctx)
	// What Run builds: the fetcher behind the link, the content the
	// runner asks for, and the watchdog on the fetcher's bytes.
	fetcher, err := fetch.New(t.TempDir(), presigner{link}, http.DefaultClient, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ag := &Agent{log: logging.Discard(), info: &wire.OfficeInfo{Name: "hq"}}
	body := []byte("a package not cached yet")
	sum := sha256.Sum256(body)
	art := &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(body))}

	limit := 2 * time.Second
	w := newWatchdog(limit, fetcher.Received)
	w.busy("running the policy (revision 1)")
	got := make(chan error, 1)
	go func() {
		_, err := content{ag, fetcher}.Get(ctx, art) // as runner.item does, with the run's ctx
		got <- err
	}()
	wctx, wcancel := context.WithTimeout(ctx, 3*limit)
	defer wcancel()
	what, stuck := w.run(wctx, 100*time.Millisecond)
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("fetched from a coordinator that is away")
		}
		t.Logf("the fetch ended: %v", err)
	default:
		if stuck {
			cancel() // what the fetch was waiting for
			t.Fatalf("an agent waiting for its unreachable coordinator (the fetch was still waiting, then: %v) is taken for hung: %s", <-got, what)
		}
	}
}
