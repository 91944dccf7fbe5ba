package relay

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A relay renews its serving certificate with a third of its life (30
// days) left. While the coordinator does not issue one, the relay serves
// with the one it holds; the warning said "no HTTPS serving certificate;
// agents cannot fetch from this relay yet", which sends an admin looking
// for an outage there is not, and says nothing of when the held one
// ends. It says now that the held one was not renewed, and until when it
// serves.
func TestServingCertRenewalFailureSaysTheHeldOneServes(t *testing.T) {
	dir, _ := enrolledDataDir(t)
	id, err := member.LoadIdentity(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	ca := newMiniCA(t)
	ca.age = 45 * time.Minute // of an hour: due for renewal
	office := []string{"https://10.1.0.5:8090"}
	sc := &servingCert{dir: t.TempDir()}
	if _, err := sc.ensure(context.Background(), ca.call, []string{"10.1.0.5"}, office); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir, cfg.Listen = dir, "10.1.0.5:8090"
	logs := &testutil.Logs{}
	m := newMembership(cfg, slog.New(logs))
	m.id, m.serving = id, sc
	m.removed.Store(&removedSet{})
	m.call = func(_ context.Context, req *wire.Request) (*wire.Response, error) {
		if req.GetCheckin() != nil {
			return &wire.Response{Body: &wire.Response_Checkin{Checkin: &wire.CheckinResponse{Office: &wire.OfficeInfo{Relays: office}}}}, nil
		}
		return nil, errors.New("the coordinator's CA is busy")
	}
	m.checkin(context.Background(), nil)

	if n := logs.Count(slog.LevelWarn, func(msg string) bool { return strings.Contains(msg, "no HTTPS serving certificate") }); n != 0 {
		t.Fatal("a relay that holds a valid serving certificate warned that it has none")
	}
	if n := logs.Count(slog.LevelWarn, func(msg string) bool { return strings.Contains(msg, "serving certificate not renewed") }); n != 1 {
		t.Fatalf("%d warnings that the serving certificate was not renewed, want 1", n)
	}
}
