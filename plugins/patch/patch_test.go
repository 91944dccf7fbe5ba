package patch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/packages"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

func sample(t *testing.T, name string) (string, *wire.Artifact) {
	t.Helper()
	return plugintest.Sample(t, name)
}

// TestPluginSubprocess takes a patch through missing, install and
// rollback with the real plugin binary, against a package installed by the
// package plugin's code in a temporary root.
func TestPluginSubprocess(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/patch/cmd/outpost-plugin-patch")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := plugins.Open(ctx, bin, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	root := t.TempDir()
	p1, a1 := sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := sample(t, "hello-2.0.0.tar.gz")

	item := func(id string, state wire.State, rollback bool) *wire.Item {
		return &wire.Item{Id: "patch/" + id, Kind: "patch", State: state, Artifact: a2,
			Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: id, Package: "hello", FixedVersion: "2.0.0", RebootRequired: true, RollbackAllowed: rollback}}}
	}
	scan := func(it *wire.Item) *proto.ItemState {
		t.Helper()
		r, err := c.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{it}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetItems()[0]
	}
	fix := item("OUT-1", wire.State_STATE_PRESENT, true)
	if st := scan(fix); st.GetApplicable() || !strings.Contains(st.GetMessage(), "hello is not installed") {
		t.Fatalf("scan without the package = %v; want not applicable", st)
	}

	pkgs := packages.New(logging.Discard())
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := pkgs.Apply(ctx, &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	if st := scan(fix); st.GetCompliant() || !strings.Contains(st.GetMessage(), "missing: hello 1.0.0 is installed, OUT-1 fixes it in 2.0.0") {
		t.Fatalf("scan = %v; want missing", st)
	}
	r, err := c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: fix, ArtifactPath: p2})
	if err != nil || !r.GetChanged() || !r.GetRebootRequired() || !strings.Contains(r.GetMessage(), "installed patch OUT-1: hello 1.0.0 → 2.0.0") {
		t.Fatalf("Apply = %v, %v", r, err)
	}
	if st := scan(fix); !st.GetCompliant() || st.GetInstalledVersion() != "2.0.0" {
		t.Fatalf("scan after install = %v", st)
	}
	bin1 := filepath.Join(root, "opt", "hello", "bin", "hello")
	if b, _ := os.ReadFile(bin1); !strings.Contains(string(b), "hello 2.0.0") {
		t.Fatalf("bin/hello after patch = %q", b)
	}
	// Rollback puts 1.0.0 back, file for file.
	rb := item("OUT-1", wire.State_STATE_ABSENT, true)
	if st := scan(rb); st.GetCompliant() {
		t.Fatalf("rollback scan before = %v", st)
	}
	r, err = c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: rb})
	if err != nil || !strings.Contains(r.GetMessage(), "rolled back patch OUT-1: hello is 1.0.0 again") {
		t.Fatalf("rollback = %v, %v", r, err)
	}
	if b, _ := os.ReadFile(bin1); !strings.Contains(string(b), "hello 1.0.0") {
		t.Fatalf("bin/hello after rollback = %q", b)
	}
	// The package is 1.0.0 again, installed from the backup (its manifest
	// names the backup's hash, so a package item for 1.0.0 reinstalls the
	// same files from its own artifact once).
	if mf, err := packages.Installed(root, "hello"); err != nil || mf.Version != "1.0.0" {
		t.Fatalf("manifest after rollback = %+v, %v", mf, err)
	}
	// A patch that does not allow rollback stays.
	norb := item("OUT-2", wire.State_STATE_PRESENT, false)
	if _, err := c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: norb, ArtifactPath: p2}); err != nil {
		t.Fatal(err)
	}
	norb.State = wire.State_STATE_ABSENT
	if _, err := c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: norb}); err == nil || !strings.Contains(err.Error(), "does not allow rollback") {
		t.Fatalf("rollback of OUT-2 = %v", err)
	}
	if b, _ := os.ReadFile(bin1); !strings.Contains(string(b), "hello 2.0.0") {
		t.Fatalf("refused rollback changed bin/hello: %q", b)
	}
}
