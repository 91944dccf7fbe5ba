package packages

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestPrefixInsideAnotherPluginsStateIsRefused: a prefix may not overlap
// the package plugin's own state directory, but the patch and registry
// plugins keep theirs beside it, under /var/lib/outpost: a package
// installed under /var/lib/outpost/registry overwrote the journal that
// holds the original values of managed settings (a file at a package's
// path that belongs to no package is overwritten, and removed with the
// package), and one under /var/lib/outpost/patches the only backup of a
// patched package. The whole of /var/lib/outpost is the plugins' now.
func TestPrefixInsideAnotherPluginsStateIsRefused(t *testing.T) {
	for _, prefix := range []string{"/var/lib/outpost/registry", "/var/lib/outpost/patches", "/var/lib/outpost/x/y"} {
		t.Run(prefix, func(t *testing.T) {
			e := newEnv(t)
			journal := filepath.Join(e.root, filepath.FromSlash(prefix), "journal.json")
			must(t, os.MkdirAll(filepath.Dir(journal), 0o700))
			must(t, os.WriteFile(journal, []byte("the original values\n"), 0o600))
			p, art := e.artifact(targz(t, file("journal.json", "{}\n")))
			_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, ArtifactPath: p,
				Item: pkgItem("tool", "1.0", prefix, wire.State_STATE_PRESENT, art)})
			if err == nil || !strings.Contains(err.Error(), "overlaps /var/lib/outpost, where the plugins keep their state") {
				t.Errorf("install under %s = %v; want it refused", prefix, err)
			}
			if got := e.read(strings.TrimPrefix(prefix, "/") + "/journal.json"); got != "the original values\n" {
				t.Errorf("a package installed under %s overwrote another plugin's state: %q", prefix, got)
			}
		})
	}
}
