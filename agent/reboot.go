package agent

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/agent/internal/runner"
	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/wire"
)

// A change that needs a reboot (a patch, say) is done only once the host
// has rebooted. Until then every report names the items that wait for it
// and since when, so that admins can find the hosts to reboot (outpost
// agent search --state reboot) and technicians reboot them (outpost
// reboot). The list is carried from run to run while the host runs the
// same boot, and is empty after the host booted again.

// maxRebootItems bounds the items a report names as waiting for a reboot.
const maxRebootItems = 100

// carryReboot adds to report, a run just made, the items that wait for
// a reboot: those of the last run (old) and those recorded as they were
// applied (a run cut short by a stop leaves only that record), if the host
// has not booted since, and this run's that were changed and need one.
func (a *Agent) carryReboot(report, old *wire.Report) {
	boot := a.bootID()
	report.BootId = boot
	var items []string
	since := int64(0)
	if old != nil && sameBoot(old.GetBootId(), boot) {
		items, since = slices.Clone(old.GetRebootItems()), old.GetRebootSinceUnix()
	}
	if n := a.rebootNeed(); n != nil && sameBoot(n.Boot, boot) {
		for _, id := range n.Items {
			if !slices.Contains(items, id) {
				items = append(items, id)
			}
		}
		if since == 0 || n.Since > 0 && n.Since < since {
			since = n.Since
		}
	}
	for _, it := range report.GetItems() {
		if it.GetRebootRequired() && it.GetStatus() == wire.ItemReport_STATUS_COMPLIANT && !slices.Contains(items, it.GetId()) {
			items = append(items, it.GetId())
			if since == 0 {
				since = report.GetAtUnix()
			}
		}
	}
	if len(items) > maxRebootItems {
		items = items[:maxRebootItems]
	}
	slices.Sort(items)
	report.RebootItems, report.RebootSinceUnix = items, since
	if len(items) == 0 {
		report.RebootSinceUnix = 0
	}
}

// bootID names the boot the host runs: the kernel's boot id on Linux,
// else when the system booted (sameBoot allows for the drift of a time
// worked out from the uptime); where neither is known, the agent's own
// start, so that a restarted agent takes the host for rebooted.
func (a *Agent) bootID() string {
	if a.bootIDFunc != nil {
		return a.bootIDFunc()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" && len(id) <= 64 {
			return id
		}
	}
	if t, ok := bootTime(); ok {
		return bootPrefix + strconv.FormatInt(t.Unix(), 10)
	}
	return "agent-" + strconv.FormatInt(started.UnixNano(), 36)
}

// WithBootID replaces how the agent names the host's boot (tests reboot
// a host by changing it).
func WithBootID(f func() string) Option { return func(a *Agent) { a.bootIDFunc = f } }

// bootPrefix starts a boot id that is a boot time (Unix seconds).
const bootPrefix = "boot-"

// sameBoot tells whether two boot ids name one boot: equal, or two boot
// times less than a minute apart (no host reboots that fast and reports
// in between).
func sameBoot(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	at, aok := strings.CutPrefix(a, bootPrefix)
	bt, bok := strings.CutPrefix(b, bootPrefix)
	if !aok || !bok {
		return false
	}
	x, err1 := strconv.ParseInt(at, 10, 64)
	y, err2 := strconv.ParseInt(bt, 10, 64)
	return err1 == nil && err2 == nil && max(x-y, y-x) < int64(time.Minute/time.Second)
}

// rebootHooks makes the runner record each item that needs a reboot as
// soon as it is applied, and reboot for those an earlier process of this
// boot applied and was stopped before it rebooted for.
func (a *Agent) rebootHooks(cfg *runner.Config) {
	cfg.RebootNeeded = func(item string) {
		boot := a.bootID()
		if n := a.rebootNeed(); n != nil && sameBoot(n.Boot, boot) {
			// The same boot, told by a boot time that moved a little: a
			// record kept under another name would be taken for another
			// boot's and replaced, losing the items before.
			boot = n.Boot
		}
		if err := a.state.NoteRebootNeed(boot, item, time.Now().Unix()); err != nil && !state.Repeated(err) {
			a.log.Error("record that an item needs a reboot: a stop before this run ends forgets it", "item", item, "err", err)
		}
	}
	cfg.PendingReboots = func() []string {
		n := a.rebootNeed()
		if n == nil || !sameBoot(n.Boot, a.bootID()) {
			return nil
		}
		return n.Items
	}
}

// rebootNeed is the recorded need of this agent's state, if any.
func (a *Agent) rebootNeed() *state.RebootNeed {
	if a.state == nil {
		return nil
	}
	return a.state.RebootNeed()
}
