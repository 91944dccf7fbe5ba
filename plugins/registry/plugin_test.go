package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestPluginSubprocess runs outpost-plugin-registry as the agent does and
// takes a setting through install, drift, repair and removal, with the
// allow-list set through the agent's environment.
func TestPluginSubprocess(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/registry/cmd/outpost-plugin-registry")
	t.Setenv("OUTPOST_REGISTRY_ALLOW", "/srv/app/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := plugins.Open(ctx, bin, logging.Discard())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	if c.Kind() != "registry" {
		t.Fatalf("kind %q", c.Kind())
	}
	root := t.TempDir()
	conf := filepath.Join(root, "srv", "app", "app.ini")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := "[log]\nlevel = debug\n"
	if err := os.WriteFile(conf, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	item := &wire.Item{Id: "registry/app-log", Kind: "registry", State: wire.State_STATE_PRESENT,
		Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/srv/app/app.ini", Format: "ini", Section: "log", Name: "level", Data: []string{"warn"}}}}
	scan := func(it *wire.Item) *proto.ItemState {
		t.Helper()
		r, err := c.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{it}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetItems()[0]
	}
	apply := func(it *wire.Item) *proto.ApplyResponse {
		t.Helper()
		r, err := c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: it})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return r
	}
	content := func() string {
		b, _ := os.ReadFile(conf)
		return string(b)
	}

	if st := scan(item); st.GetCompliant() || !strings.Contains(st.GetMessage(), `is "debug"; want "warn"`) {
		t.Fatalf("scan before = %v", st)
	}
	apply(item)
	if got := content(); got != "[log]\nlevel = warn\n" {
		t.Fatalf("after apply %q", got)
	}
	if fi, _ := os.Stat(conf); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", fi.Mode())
	}
	os.WriteFile(conf, []byte("[log]\nlevel = trace\n"), 0o640)
	if st := scan(item); st.GetCompliant() {
		t.Fatalf("drift not seen: %v", st)
	}
	if r := apply(item); !r.GetChanged() || !strings.Contains(r.GetMessage(), `"trace"`) {
		t.Fatalf("repair = %v", r)
	}
	item.State = wire.State_STATE_ABSENT
	if r := apply(item); !strings.Contains(r.GetMessage(), "restored") {
		t.Fatalf("removal = %v", r)
	}
	if got := content(); got != orig {
		t.Fatalf("after removal %q; want the original %q", got, orig)
	}

	// The default prefixes are replaced by the environment: /etc/ is not
	// allowed in this process.
	bad := &wire.Item{Id: "registry/etc", Kind: "registry", State: wire.State_STATE_PRESENT,
		Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/etc/x.conf", Name: "a", Data: []string{"1"}}}}
	// A refusal crosses the process boundary as one: the agent does not
	// try it again.
	if _, err := c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: bad}); err == nil || !strings.Contains(err.Error(), "must be under /srv/app/") || !errors.Is(err, plugins.ErrRefused) {
		t.Fatalf("Apply outside the allow-list = %v; want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "x.conf")); err == nil {
		t.Fatal("refused item wrote its file")
	}
}
