package agent

import (
	"fmt"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// The items waiting for a reboot are carried from run to run while the
// host runs the same boot, gain this run's, and are gone after a boot.
func TestCarryReboot(t *testing.T) {
	boot := "b1"
	a := &Agent{bootIDFunc: func() string { return boot }}
	run := func(at int64, items ...*wire.ItemReport) *wire.Report {
		return &wire.Report{AtUnix: at, Items: items}
	}
	patched := func(id string) *wire.ItemReport {
		return &wire.ItemReport{Id: id, Status: wire.ItemReport_STATUS_COMPLIANT, Changed: true, RebootRequired: true}
	}
	show := func(r *wire.Report) string {
		return fmt.Sprintf("%v since %d in %s", r.GetRebootItems(), r.GetRebootSinceUnix(), r.GetBootId())
	}
	r1 := run(100, patched("patch/B"), &wire.ItemReport{Id: "package/x", Status: wire.ItemReport_STATUS_COMPLIANT},
		// A failed one did not change the host.
		&wire.ItemReport{Id: "patch/F", Status: wire.ItemReport_STATUS_FAILED, RebootRequired: true})
	a.carryReboot(r1, nil)
	if got := show(r1); got != "[patch/B] since 100 in b1" {
		t.Fatalf("first run: %s", got)
	}
	r2 := run(200, patched("patch/A"))
	a.carryReboot(r2, r1)
	if got := show(r2); got != "[patch/A patch/B] since 100 in b1" {
		t.Fatalf("second run: %s", got)
	}
	r3 := run(300, &wire.ItemReport{Id: "patch/A", Status: wire.ItemReport_STATUS_COMPLIANT})
	a.carryReboot(r3, r2)
	if got := show(r3); got != "[patch/A patch/B] since 100 in b1" {
		t.Fatalf("a run that changed nothing: %s", got)
	}
	if !changed(r1, r2) || changed(r2, r3) {
		t.Fatal("a new item waiting for a reboot is news; the same ones again are not")
	}
	boot = "b2"
	r4 := run(400, &wire.ItemReport{Id: "patch/A", Status: wire.ItemReport_STATUS_COMPLIANT})
	a.carryReboot(r4, r3)
	if got := show(r4); got != "[] since 0 in b2" {
		t.Fatalf("after a reboot: %s", got)
	}
	if !changed(r3, r4) {
		t.Fatal("a reboot that ends the wait is news")
	}
}

// Boot times worked out from the uptime drift a little: within a minute
// they are one boot; boot ids are equal or not.
func TestSameBoot(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"3f1c-aa", "3f1c-aa", true},
		{"3f1c-aa", "3f1c-ab", false},
		{"", "", false},
		{"boot-1700000000", "boot-1700000001", true},
		{"boot-1700000059", "boot-1700000000", true},
		{"boot-1700000060", "boot-1700000000", false},
		{"boot-1700000000", "3f1c-aa", false},
		{"boot-x", "boot-x", true},
		{"boot-x", "boot-y", false},
	} {
		if got := sameBoot(tc.a, tc.b); got != tc.want {
			t.Errorf("sameBoot(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
