package registry

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestAHugeSettingsFileIsRefusedWithoutReadingItWhole: a settings file is
// at most MaxSettingsFile bytes; one far larger (a log an application
// writes where its config was, a sparse file a local user made) is
// refused after reading no more than that, not read whole into the
// memory of a plugin that runs as root.
func TestAHugeSettingsFileIsRefusedWithoutReadingItWhole(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "opt", "app", "app.conf")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 20
	if err := f.Truncate(size); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	m := New(logging.Discard())
	item := regItem("registry/app", wire.State_STATE_PRESENT, &wire.RegistrySpec{Path: "/opt/app/app.conf", Name: "a", Data: []string{"1"}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = m.Apply(context.Background(), &proto.ApplyRequest{Root: root, Item: item})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Apply = %v; want the file refused as too large", err)
	}
	if got := (after.TotalAlloc - before.TotalAlloc) >> 20; got > 16 {
		t.Fatalf("refusing a %d MB settings file allocated %d MB; want at most about %d bytes read", size>>20, got, MaxSettingsFile)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != size {
		t.Fatalf("the file changed: %v, %v", fi, err)
	}
}
