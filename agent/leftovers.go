package agent

import (
	"path/filepath"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// removeWriteLeftovers removes what writes cut short by a kill (a battery
// run flat, a forced shutdown) left in the agent's own directories: every
// file is written to a temporary file that is renamed into place, and
// nothing else ever removes one left behind. It runs at start, before
// anything of the agent writes; the state and the content cache clean
// their own directories when they open, and technician sessions theirs.
func (a *Agent) removeWriteLeftovers() {
	n := 0
	for _, dir := range []string{a.cfg.DataDir, filepath.Join(a.cfg.DataDir, "identity"), upgradeDir(a.cfg.DataDir)} {
		n += fsutil.RemoveOld(dir, fsutil.WriteLeftover, 0)
	}
	if n > 0 {
		a.log.Info("removed temporary files that writes cut short by a stop left", "files", n)
	}
}
