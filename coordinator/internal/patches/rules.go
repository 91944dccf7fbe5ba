package patches

import (
	"errors"
	"fmt"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// RuleStore is what Evaluate reads and records.
type RuleStore interface {
	Rules() ([]store.ApprovalRule, error)
	Patches() ([]store.Patch, error)
	Offices() ([]store.Office, error)
	Members(office string) ([]store.Member, error)
	Approvals(office string) ([]store.PatchApproval, error)
	Approve(store.PatchApproval) (bool, error)
	CleanSince(office, patch string) (time.Time, error)
	SetCleanSince(office, patch string, since time.Time) error
}

// Evaluate applies every rule at now: a patch of at least the rule's
// severity is approved in the rule's test office at once, and in the
// rule's other offices once every agent of the test office has reported it
// installed (or not applicable, with at least one installed) and nothing
// else for AfterDays. It returns the approvals it added.
//
// It runs every hour over the whole catalog, so it writes only what
// changes: approvals stored already are not asked for again, and a
// clean-since time is written only when it starts or ends.
func Evaluate(st RuleStore, now time.Time) ([]store.PatchApproval, error) {
	rules, err := st.Rules()
	if err != nil || len(rules) == 0 {
		return nil, err
	}
	catalog, err := st.Patches()
	if err != nil {
		return nil, err
	}
	offices, err := st.Offices()
	if err != nil {
		return nil, err
	}
	// Read after the catalog: an approval of a patch removed since is
	// gone with it, and asking for it again finds the patch gone.
	stored, err := st.Approvals("")
	if err != nil {
		return nil, err
	}
	type officePatch struct{ office, patch string }
	approved := map[officePatch]bool{}
	for _, ap := range stored {
		approved[officePatch{ap.Office, ap.Patch}] = true
	}
	var added []store.PatchApproval
	// approve says gone when the patch or the office left the store since
	// it was read (outpost patch rm, office rm): nothing to approve, and
	// no reason to stop the rest of the evaluation.
	approve := func(r store.ApprovalRule, patch, office string) (gone bool, err error) {
		if approved[officePatch{office, patch}] {
			return false, nil
		}
		ap := store.PatchApproval{Patch: patch, Office: office, By: "rule " + r.Name, Window: r.Window, Reboot: r.Reboot, At: now}
		ok, err := st.Approve(ap)
		if errors.Is(err, store.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("rule %s: approve %s for %s: %w", r.Name, patch, office, err)
		}
		approved[officePatch{office, patch}] = true
		if ok {
			added = append(added, ap)
		}
		return false, nil
	}
	reports := map[string][]map[string]string{} // test office → its agents' item statuses
	for _, r := range rules {
		min := SeverityRank(r.MinSeverity)
		agents, ok := reports[r.TestOffice]
		if !ok {
			members, err := st.Members(r.TestOffice)
			if err != nil {
				return added, err
			}
			agents = itemStatuses(members)
			reports[r.TestOffice] = agents
		}
		for _, p := range catalog {
			if SeverityRank(p.Severity) < min {
				continue
			}
			if gone, err := approve(r, p.ID, r.TestOffice); err != nil || gone {
				if err != nil {
					return added, err
				}
				continue
			}
			since, err := cleanSince(st, r.TestOffice, p.ID, agents, now)
			if err != nil {
				return added, err
			}
			if since.IsZero() || now.Sub(since) < time.Duration(r.AfterDays)*24*time.Hour {
				continue
			}
			targets := r.Offices
			if len(targets) == 0 {
				for _, o := range offices {
					if o.Name != r.TestOffice {
						targets = append(targets, o.Name)
					}
				}
			}
			for _, o := range targets {
				if _, err := approve(r, p.ID, o); err != nil {
					return added, err
				}
			}
		}
	}
	return added, nil
}

// itemStatuses is, for each agent among members (relays are left out),
// the status of each item of its last report.
func itemStatuses(members []store.Member) []map[string]string {
	var out []map[string]string
	for _, m := range members {
		if m.Role == "relay" {
			continue
		}
		statuses := map[string]string{}
		if m.Report != nil {
			for _, it := range m.Report.Items {
				statuses[it.ID] = it.Status
			}
		}
		out = append(out, statuses)
	}
	return out
}

// cleanSince updates and returns since when every agent of the office has
// had the patch installed; zero when not all have. agents are the item
// statuses of the office's agents (itemStatuses).
func cleanSince(st RuleStore, office, patch string, agents []map[string]string, now time.Time) (time.Time, error) {
	clean, installed := true, 0
	for _, statuses := range agents {
		switch statuses["patch/"+patch] {
		case "compliant":
			installed++
		case "not_applicable":
		default:
			clean = false
		}
	}
	since, err := st.CleanSince(office, patch)
	if err != nil {
		return time.Time{}, err
	}
	if len(agents) == 0 || installed == 0 || !clean {
		if since.IsZero() {
			return time.Time{}, nil
		}
		return time.Time{}, st.SetCleanSince(office, patch, time.Time{})
	}
	if since.IsZero() {
		since = now
		if err := st.SetCleanSince(office, patch, since); err != nil {
			return time.Time{}, err
		}
	}
	return since, nil
}
