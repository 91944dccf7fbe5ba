//go:build unix

package registry

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// A settings file that belongs to an application's user (4321 here; the
// test runs as root, as the agent does) keeps its owner and group when a
// value in it is set, as it keeps its mode and its other lines: the
// application, which reads only its own 0600 config, still reads it.
func TestASettingsFileKeepsItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	root := t.TempDir()
	writeFile(t, root, "opt/app/app.ini", "[core]\nx = 1\n")
	full := filepath.Join(root, "opt/app/app.ini")
	if err := os.Chmod(full, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(full, 4321, 4321); err != nil {
		t.Fatal(err)
	}
	m := New(logging.Discard())
	it := regItem("registry/app-telemetry", wire.State_STATE_PRESENT, &wire.RegistrySpec{
		Path: "/opt/app/app.ini", Format: "ini", Section: "core", Name: "telemetry", Type: "string", Data: []string{"off"}})
	if _, err := m.Apply(context.Background(), &proto.ApplyRequest{Root: root, Item: it}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(full)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600 kept", fi.Mode().Perm())
	}
	if st.Uid != 4321 || st.Gid != 4321 {
		t.Errorf("after setting a value the file is owned by %d:%d, want its owner 4321:4321 kept (the app can no longer read its 0600 config)", st.Uid, st.Gid)
	}
}
