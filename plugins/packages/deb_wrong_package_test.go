//go:build linux

package packages

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestDebThatIsNotTheItemsPackageIsRefusedBeforeDpkgRuns: a .deb holds
// whatever package and version its control file says, and dpkg --install
// installs that, downgrades included. The plugin checked what dpkg had
// installed only afterwards: a policy naming outpost-hello 3.0-1 with the
// artifact of 1.0-1 downgraded the installed 2.0-1 to 1.0-1 (then said
// so), and did again at every run, running the maintainer scripts each
// time; a .deb of another package installed that package. The .deb's own
// fields are read first now, and a mismatch is refused (not retried: the
// artifact cannot change) with dpkg never run.
func TestDebThatIsNotTheItemsPackageIsRefusedBeforeDpkgRuns(t *testing.T) {
	d := newDpkgSystem(t)
	m := New(logging.Discard(), WithDpkgDir(d.bin))
	ctx := context.Background()
	apply := func(it *wire.Item, path string) error {
		_, err := m.Apply(ctx, &proto.ApplyRequest{Root: "/", Item: it, ArtifactPath: path})
		return err
	}
	v1 := d.deb("outpost-hello", "1.0-1", map[string]string{"opt/outpost-hello/hello": "one\n"}, nil)
	v2 := d.deb("outpost-hello", "2.0-1", map[string]string{"opt/outpost-hello/hello": "two\n"}, nil)
	other := d.deb("outpost-other", "3.0-1", map[string]string{"opt/outpost-other/other": "other\n"}, nil)
	if err := apply(debPkgItem("outpost-hello", "2.0-1", wire.State_STATE_PRESENT), v2); err != nil {
		t.Fatal(err)
	}

	err := apply(debPkgItem("outpost-hello", "3.0-1", wire.State_STATE_PRESENT), v1)
	if err == nil || !strings.Contains(err.Error(), "holds outpost-hello 1.0-1, not outpost-hello 3.0-1") || !errors.Is(err, plugins.ErrRefused) {
		t.Errorf("apply of 3.0-1 with the .deb of 1.0-1 = %v; want it refused, naming what the .deb holds", err)
	}
	if got := d.version("outpost-hello"); got != "2.0-1" {
		t.Errorf("after a .deb of the wrong version was refused, dpkg has outpost-hello %q installed; want 2.0-1 untouched", got)
	}

	err = apply(debPkgItem("outpost-hello", "3.0-1", wire.State_STATE_PRESENT), other)
	if err == nil || !strings.Contains(err.Error(), "holds outpost-other 3.0-1, not outpost-hello 3.0-1") || !errors.Is(err, plugins.ErrRefused) {
		t.Errorf("apply of outpost-hello with the .deb of outpost-other = %v; want it refused", err)
	}
	if got := d.version("outpost-other"); got != "" {
		t.Errorf("a .deb of another package than the item names was installed: outpost-other %s", got)
	}
}
