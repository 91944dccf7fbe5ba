package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/patches"
	"github.com/outposthq/outpost/coordinator/internal/policy"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/version"
	"github.com/outposthq/outpost/pkg/wire"
)

// patchRoutes are the patch catalog, approvals, rules, missing patches and
// compliance history.
func (a *API) patchRoutes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"POST /v1/patches/import":           a.importPatches,
		"GET /v1/patches":                   a.listPatches,
		"GET /v1/patches/{id}":              a.showPatch,
		"DELETE /v1/patches/{id}":           a.removePatch,
		"POST /v1/patches/{id}/approve":     a.approvePatch,
		"DELETE /v1/patches/{id}/approve":   a.revokePatch,
		"GET /v1/patch-approvals":           a.listApprovals,
		"PUT /v1/patch-rules/{name}":        a.putRule,
		"GET /v1/patch-rules":               a.listRules,
		"GET /v1/patch-rules/{name}":        a.showRule,
		"DELETE /v1/patch-rules/{name}":     a.deleteRule,
		"POST /v1/patch-rules/evaluate":     a.evaluateRules,
		"GET /v1/patches-missing":           a.missingPatches,
		"GET /v1/agents/{id}/runs":          a.agentRuns,
		"GET /v1/offices/{name}/compliance": a.officeCompliance,
	}
}

// Patch makes the policy compiler see the catalog (policy.PatchLookup).
func (l artifactLookup) Patch(id string) (*wire.PatchSpec, string, bool, error) {
	p, err := l.s.Patch(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, err
	}
	return patchSpec(p), p.Artifact, true, nil
}

func patchSpec(p *store.Patch) *wire.PatchSpec {
	return &wire.PatchSpec{Id: p.ID, Package: p.Package, FixedVersion: p.FixedVersion, RebootRequired: p.RebootRequired,
		Title: p.Title, Severity: p.Severity, Supersedes: p.Supersedes, RollbackAllowed: p.RollbackAllowed}
}

func (a *API) importPatches(w http.ResponseWriter, r *http.Request) error {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, patches.MaxFeed))
	if err != nil {
		return err
	}
	ps, err := patches.Parse(src, time.Now().UTC())
	if err != nil {
		return feedError(err)
	}
	a.artifactsMu.RLock()
	defer a.artifactsMu.RUnlock()
	if err := patches.CheckArtifacts(ps, artifactLookup{a.d.Store}); err != nil {
		return feedError(err)
	}
	added, updated, err := a.d.Store.ImportPatches(ps, patches.CheckCatalog)
	if err != nil {
		return feedError(err)
	}
	a.log.Info("patch feed imported", "added", added, "updated", updated)
	// Every office gets the catalog's new facts (new patches to scan for, a
	// new fixed version, a supersedes) in a new revision.
	if err := a.republishAll(); err != nil {
		return err
	}
	ids := make([]string, 0, len(ps))
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	writeJSON(w, http.StatusOK, map[string]any{"added": added, "updated": updated, "patches": ids})
	return nil
}

func feedError(err error) error {
	var fe *patches.FeedError
	if errors.As(err, &fe) {
		return httpError(http.StatusBadRequest, "%s", fe.Error())
	}
	return err
}

func (a *API) listPatches(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.d.Store.Patches()
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []store.Patch{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"patches": ps})
	return nil
}

func (a *API) showPatch(w http.ResponseWriter, r *http.Request) error {
	p, err := a.d.Store.Patch(r.PathValue("id"))
	if err != nil {
		return err
	}
	approvals, err := a.d.Store.Approvals("")
	if err != nil {
		return err
	}
	mine := []store.PatchApproval{}
	for _, ap := range approvals {
		if ap.Patch == p.ID {
			mine = append(mine, ap)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"patch": p, "approvals": mine})
	return nil
}

// removedPatch answers a removal from the catalog.
type removedPatch struct {
	Removed string `json:"removed"`
	// Revoked are the offices whose approval of it went with it.
	Revoked []string `json:"revoked"`
	// Superseded are the patches of the catalog it superseded that
	// nothing supersedes now: where they are approved, agents are told of
	// them again.
	Superseded []string `json:"superseded"`
	// Artifact is its package's, which stays on the file server.
	Artifact string `json:"artifact"`
}

// removePatch takes a patch out of the catalog. A policy that names it
// refuses the removal (none of that policy's later revisions could be
// made), and so does an approval unless ?revoke=true asks for the
// approvals to go with it. Every office is then signed again without it:
// its agents stop installing it and scanning for it; where it is installed
// it stays. Its artifact stays for "outpost artifact rm".
func (a *API) removePatch(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	revoke, err := boolParam(r, "revoke")
	if err != nil {
		return err
	}
	p, revoked, err := a.deletePatch(id, revoke)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httpError(http.StatusNotFound, "no patch %s in the catalog (see outpost patch list)", id)
	case errors.Is(err, store.ErrConflict):
		return httpError(http.StatusConflict, "%s; revoke the approvals first (outpost patch revoke %s --office NAME), or remove it with them (--revoke)",
			strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error()), id)
	case err != nil:
		return err
	}
	detail := p.Title
	if len(revoked) > 0 {
		detail += "; approvals revoked for " + strings.Join(revoked, ", ")
	}
	a.audit(r, "patch.remove", "patch "+id, detail)
	a.log.Info("patch removed from the catalog", "patch", id, "revoked", revoked)
	out := removedPatch{Removed: id, Revoked: revoked, Superseded: []string{}, Artifact: p.Artifact}
	if out.Revoked == nil {
		out.Revoked = []string{}
	}
	// What it superseded and nothing supersedes now (what superseded it
	// took its place in the chain) is offered again where approved.
	all, err := a.d.Store.Patches()
	if err != nil {
		return err
	}
	catalog, ids := map[string]store.Patch{}, []string{}
	for _, q := range all {
		catalog[q.ID] = q
		ids = append(ids, q.ID)
	}
	replaced := patches.Superseded(ids, catalog)
	for _, old := range p.Supersedes {
		if _, ok := catalog[old]; ok && !replaced[old] {
			out.Superseded = append(out.Superseded, old)
		}
	}
	// Every office scans for the catalog's patches, so every office gets a
	// revision without it (an office whose policy did not change keeps its
	// revision).
	if err := a.republishAll(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deletePatch removes the patch from the store unless a policy names it.
// It holds artifactsMu, as an artifact's removal does, so that no policy
// change that found the patch in the catalog stores what names it after the
// check.
func (a *API) deletePatch(id string, revoke bool) (*store.Patch, []string, error) {
	a.artifactsMu.Lock()
	defer a.artifactsMu.Unlock()
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	users, err := a.patchUsers(id)
	if err != nil {
		return nil, nil, err
	}
	if len(users) > 0 {
		return nil, nil, httpError(http.StatusConflict, "patch %s is named by %s; take it out of %s first",
			id, strings.Join(users, " and "), map[bool]string{true: "it", false: "them"}[len(users) == 1])
	}
	return a.d.Store.DeletePatch(id, revoke)
}

// patchUsers names the policies that name a patch: offices' own and named
// ones. The caller holds a.scopeMu.
func (a *API) patchUsers(id string) ([]string, error) {
	names := func(items []*wire.Item) bool {
		return slices.ContainsFunc(items, func(it *wire.Item) bool { return it.GetId() == policy.KindPatch+"/"+id })
	}
	sc, err := a.loadScope()
	if err != nil {
		return nil, err
	}
	var users []string
	for _, p := range sc.named {
		if names(p.items) {
			users = append(users, "policy "+p.Name)
		}
	}
	offices, err := a.d.Store.Offices()
	if err != nil {
		return nil, err
	}
	for _, o := range offices {
		items, err := sc.officeItems(o.Name)
		if err != nil {
			return nil, err
		}
		if names(items) {
			users = append(users, "the policy of office "+o.Name)
		}
	}
	return users, nil
}

type approveInput struct {
	Office string `json:"office"`
	Window string `json:"window"`
	Reboot string `json:"reboot"`
}

func checkSchedule(window, reboot string) error {
	if window != "" {
		if msg := policy.CheckWindow(window); msg != "" {
			return httpError(http.StatusBadRequest, "%s", msg)
		}
	}
	switch reboot {
	case "", "never", "if-needed-inside-window", "notify-only":
	default:
		return httpError(http.StatusBadRequest, "reboot %q: want never, if-needed-inside-window or notify-only", reboot)
	}
	return nil
}

func (a *API) approvePatch(w http.ResponseWriter, r *http.Request) error {
	var in approveInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Office == "" {
		return httpError(http.StatusBadRequest, "no office given: approve a patch for an office, e.g. --office berlin")
	}
	if err := checkSchedule(in.Window, in.Reboot); err != nil {
		return err
	}
	by := cmp.Or(a.actor(r), "admin")
	ap := store.PatchApproval{Patch: r.PathValue("id"), Office: in.Office, By: by, Window: in.Window, Reboot: in.Reboot, At: time.Now().UTC()}
	added, err := a.d.Store.Approve(ap)
	if err != nil {
		return err
	}
	rev, err := a.republish(in.Office)
	if refusedPolicy(err) && added {
		// Kept, it would fail every later publication of the office.
		if rerr := a.d.Store.Revoke(ap.Office, ap.Patch); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	a.audit(r, "patch.approve", "patch "+ap.Patch, "office "+ap.Office)
	if err != nil {
		return err
	}
	a.log.Info("patch approved", "patch", ap.Patch, "office", ap.Office, "revision", rev)
	writeJSON(w, http.StatusOK, map[string]any{"approval": ap, "added": added, "revision": rev})
	return nil
}

func (a *API) revokePatch(w http.ResponseWriter, r *http.Request) error {
	office := r.URL.Query().Get("office")
	if office == "" {
		return httpError(http.StatusBadRequest, "no office given: ?office=NAME")
	}
	if err := a.d.Store.Revoke(office, r.PathValue("id")); err != nil {
		return err
	}
	a.audit(r, "patch.revoke", "patch "+r.PathValue("id"), "office "+office)
	rev, err := a.republish(office)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": r.PathValue("id"), "office": office, "revision": rev})
	return nil
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) error {
	aps, err := a.d.Store.Approvals(r.URL.Query().Get("office"))
	if err != nil {
		return err
	}
	if aps == nil {
		aps = []store.PatchApproval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": aps})
	return nil
}

type ruleInput struct {
	MinSeverity string   `json:"min_severity"`
	TestOffice  string   `json:"test_office"`
	AfterDays   int      `json:"after_days"`
	Offices     []string `json:"offices"`
	Window      string   `json:"window"`
	Reboot      string   `json:"reboot"`
}

func (a *API) putRule(w http.ResponseWriter, r *http.Request) error {
	var in ruleInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	name := r.PathValue("name")
	switch {
	case !officeName.MatchString(name):
		return httpError(http.StatusBadRequest, "rule name %q: use 1-63 lower-case letters, digits and dashes", name)
	case patches.SeverityRank(in.MinSeverity) < 0:
		return httpError(http.StatusBadRequest, "min_severity %q: want one of %s", in.MinSeverity, strings.Join(patches.Severities, ", "))
	case in.TestOffice == "":
		return httpError(http.StatusBadRequest, "no test_office: a rule approves in a test office first")
	case in.AfterDays < 0 || in.AfterDays > 365:
		return httpError(http.StatusBadRequest, "after_days %d: want 0 to 365", in.AfterDays)
	}
	if err := checkSchedule(in.Window, in.Reboot); err != nil {
		return err
	}
	rule := store.ApprovalRule{Name: name, MinSeverity: in.MinSeverity, TestOffice: in.TestOffice, AfterDays: in.AfterDays,
		Offices: in.Offices, Window: in.Window, Reboot: in.Reboot, Created: time.Now().UTC()}
	stored, created, err := a.d.Store.PutRule(rule)
	if err != nil {
		return err
	}
	a.audit(r, "patch_rule.put", "patch rule "+name, fmt.Sprintf("%s and above to %s, elsewhere after %d days", rule.MinSeverity, rule.TestOffice, rule.AfterDays))
	// The rule takes effect now, not at the next hourly evaluation. If
	// that fails, the rule is still saved: the answer says so, and the
	// hourly run tries again.
	var warnings []string
	added, err := a.EvaluateRules(time.Now().UTC())
	if err != nil {
		a.log.Error("evaluate the approval rules", "rule", name, "err", err)
		warnings = append(warnings, "the rule is saved, but evaluating the rules failed (see the coordinator's log); the hourly evaluation will try again")
	}
	if added == nil {
		added = []store.PatchApproval{}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, struct {
		store.ApprovalRule
		Approved []store.PatchApproval `json:"approved"`
		Warnings []string              `json:"warnings,omitempty"`
	}{stored, added, warnings})
	return nil
}

func (a *API) showRule(w http.ResponseWriter, r *http.Request) error {
	rule, err := a.d.Store.Rule(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rule)
	return nil
}

func (a *API) listRules(w http.ResponseWriter, r *http.Request) error {
	rules, err := a.d.Store.Rules()
	if err != nil {
		return err
	}
	if rules == nil {
		rules = []store.ApprovalRule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
	return nil
}

func (a *API) deleteRule(w http.ResponseWriter, r *http.Request) error {
	if err := a.d.Store.DeleteRule(r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// EvaluateRules runs the approval rules now and republishes the offices
// that gained approvals. The coordinator calls it periodically.
func (a *API) EvaluateRules(now time.Time) ([]store.PatchApproval, error) {
	// An evaluation that failed part way kept what it approved: those
	// offices are signed again all the same.
	added, err := patches.Evaluate(a.d.Store, now)
	offices := map[string]bool{}
	for _, ap := range added {
		offices[ap.Office] = true
	}
	kept := added[:0:0]
	for o := range offices {
		_, perr := a.republish(o)
		if refusedPolicy(perr) {
			// Kept, they would fail every later publication of the office;
			// the rule tries again at its next evaluation.
			for _, ap := range added {
				if ap.Office == o {
					perr = errors.Join(perr, a.d.Store.Revoke(o, ap.Patch))
				}
			}
			offices[o] = false
		}
		if perr != nil {
			err = errors.Join(err, perr)
		}
	}
	for _, ap := range added {
		if offices[ap.Office] {
			kept = append(kept, ap)
		}
	}
	return kept, err
}

func (a *API) evaluateRules(w http.ResponseWriter, r *http.Request) error {
	added, err := a.EvaluateRules(time.Now().UTC())
	if err != nil {
		return err
	}
	if added == nil {
		added = []store.PatchApproval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approved": added})
	return nil
}

// maxReportOnly bounds how many unapproved patches one office's policy
// carries for scanning; they take only the room the policy's items leave
// of what an agent may report.
const maxReportOnly = 2000

// errPolicyTooLarge refuses a policy its agents could not take or report
// on.
var errPolicyTooLarge = errors.New("policy too large")

// errPatchPinned refuses a policy in which an approved patch and a package
// item would replace each other's version of a package at every run.
var errPatchPinned = errors.New("an approved patch conflicts with a package item")

// refusedPolicy reports whether err refuses the policy an approval (or a
// policy) would make: the approval is then not kept, or the office could
// not be published again.
func refusedPolicy(err error) bool {
	return errors.Is(err, errPolicyTooLarge) || errors.Is(err, errPatchPinned)
}

// withPatches adds the catalog to an office's compiled items: one item per
// approved patch that no approved patch supersedes and that the admin's
// YAML does not already name, and a report-only item (scanned, never
// applied) for each other catalog patch that nothing in the catalog
// supersedes, so that hosts report what they miss. An approval without its
// own window or reboot policy takes defWindow and defReboot, the defaults
// of the office's own policy (policy.Defaults).
func (a *API) withPatches(office, defWindow, defReboot string, items []*wire.Item) ([]*wire.Item, error) {
	aps, err := a.d.Store.Approvals(office)
	if err != nil {
		return nil, err
	}
	all, err := a.d.Store.Patches()
	if err != nil || len(all) == 0 {
		return items, err
	}
	catalog := map[string]store.Patch{}
	for _, p := range all {
		catalog[p.ID] = p
	}
	named := map[string]bool{}
	pins := map[string]*wire.Item{} // package name → the item that installs it
	for _, it := range items {
		named[it.GetId()] = true
		if pkg := it.GetPackage(); pkg != nil && it.GetKind() == policy.KindPackage && it.GetState() == wire.State_STATE_PRESENT {
			pins[pkg.GetName()] = it
		}
	}
	var ids []string
	for _, ap := range aps {
		if _, ok := catalog[ap.Patch]; ok {
			ids = append(ids, ap.Patch)
		}
	}
	superseded := patches.Superseded(ids, catalog)
	lookup := artifactLookup{a.d.Store}
	for _, ap := range aps {
		p, ok := catalog[ap.Patch]
		if !ok || superseded[p.ID] || named["patch/"+p.ID] {
			continue
		}
		// A package item that installs an older version than the patch's
		// fix puts it back after the patch at every run, and both report
		// compliant; a pin at the fix or later already has it.
		if pin := pins[p.Package]; pin != nil && version.Compare(pin.GetPackage().GetVersion(), p.FixedVersion) < 0 {
			return nil, fmt.Errorf("%w: patch %s installs %s %s, but item %s of office %s's policy installs %s %s: each would put its version back at every run. Raise the package item to %s or later, or leave the patch unapproved for %s",
				errPatchPinned, p.ID, p.Package, p.FixedVersion, pin.GetId(), office, p.Package, pin.GetPackage().GetVersion(), p.FixedVersion, office)
		}
		size, name, found, err := lookup.Artifact(p.Artifact)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("patch %s: artifact %s is no longer recorded", p.ID, p.Artifact)
		}
		items = append(items, &wire.Item{Id: "patch/" + p.ID, Kind: policy.KindPatch, State: wire.State_STATE_PRESENT,
			Artifact: &wire.Artifact{Sha256: p.Artifact, Size: size, Name: name}, Window: cmp.Or(ap.Window, defWindow), Reboot: cmp.Or(ap.Reboot, defReboot),
			Spec: &wire.Item_Patch{Patch: patchSpec(&p)}})
		named["patch/"+p.ID] = true
	}
	// An agent reports every item of its policy, and a check-in whose
	// report has more than wire.MaxCheckinReportItems is refused: such a
	// policy would silence its agents for good.
	if len(items) > wire.MaxCheckinReportItems {
		return nil, fmt.Errorf("%w: office %s's policy would have %d items with its approved patches, more than the %d an agent may report: approve fewer patches for it, or remove items",
			errPolicyTooLarge, office, len(items), wire.MaxCheckinReportItems)
	}
	approved := map[string]bool{}
	for _, ap := range aps {
		approved[ap.Patch] = true
	}
	allIDs := make([]string, 0, len(all))
	for _, p := range all {
		allIDs = append(allIDs, p.ID)
	}
	replaced := patches.Superseded(allIDs, catalog)
	n := 0
	for _, p := range all {
		if approved[p.ID] || replaced[p.ID] || named["patch/"+p.ID] || n >= maxReportOnly || len(items) >= wire.MaxCheckinReportItems {
			continue
		}
		n++
		items = append(items, &wire.Item{Id: "patch/" + p.ID, Kind: policy.KindPatch, State: wire.State_STATE_PRESENT,
			ReportOnly: true, Spec: &wire.Item_Patch{Patch: patchSpec(&p)}})
	}
	return items, nil
}

// republish signs a new revision of the office's policy: its YAML as the
// admin last applied it (none is an empty policy), the named policies that
// target it or its computers, and its approved patches. It returns the new
// revision.
func (a *API) republish(office string) (uint64, error) { return a.publish(office) }

// republishAll republishes every office.
func (a *API) republishAll() error {
	offices, err := a.d.Store.Offices()
	if err != nil {
		return err
	}
	for _, o := range offices {
		if _, err := a.republish(o.Name); err != nil {
			return err
		}
	}
	return nil
}

// hostPatch is one patch item as one host last reported it.
type hostPatch struct {
	Patch   string `json:"patch"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type hostMissing struct {
	Agent    string      `json:"agent"`
	Hostname string      `json:"hostname"`
	Office   string      `json:"office"`
	Missing  []hostPatch `json:"missing"`
}

type officeMissing struct {
	Office  string         `json:"office"`
	Hosts   int            `json:"hosts"`
	Missing map[string]int `json:"missing"` // patch id → hosts missing it
}

// missingPatches lists, by host and by office, the patch items hosts
// report as not installed: missing, pending (a window) or failed. A host
// whose last report is of an earlier revision has its patches pending
// (currentReport): it has not said how it runs the current one.
func (a *API) missingPatches(w http.ResponseWriter, r *http.Request) error {
	office := r.URL.Query().Get("office")
	if office != "" {
		if _, err := a.d.Store.Office(office); err != nil {
			return err
		}
	}
	members, err := a.d.Store.Members(office)
	if err != nil {
		return err
	}
	current, err := a.revisions()
	if err != nil {
		return err
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Hostname < members[j].Hostname })
	hosts := []hostMissing{}
	byOffice := map[string]*officeMissing{}
	for _, m := range members {
		if m.Role == "relay" {
			continue
		}
		om := byOffice[m.Office]
		if om == nil {
			om = &officeMissing{Office: m.Office, Missing: map[string]int{}}
			byOffice[m.Office] = om
		}
		om.Hosts++
		hm := hostMissing{Agent: m.ID, Hostname: m.Hostname, Office: m.Office, Missing: []hostPatch{}}
		if m.Report != nil {
			stale := currentReport(&m, current[m.Office]) == nil
			for _, it := range m.Report.Items {
				id, ok := strings.CutPrefix(it.ID, "patch/")
				status, msg := it.Status, it.Message
				if stale {
					status, msg = "pending", fmt.Sprintf("not reported on revision %d yet (last report: revision %d, %s)", current[m.Office], m.Report.Revision, it.Status)
				}
				if !ok || status == "compliant" || status == "not_applicable" {
					continue
				}
				hm.Missing = append(hm.Missing, hostPatch{Patch: id, Status: status, Message: msg})
				om.Missing[id]++
			}
		}
		hosts = append(hosts, hm)
	}
	offices := []officeMissing{}
	for _, om := range byOffice {
		offices = append(offices, *om)
	}
	sort.Slice(offices, func(i, j int) bool { return offices[i].Office < offices[j].Office })
	writeJSON(w, http.StatusOK, map[string]any{"hosts": hosts, "offices": offices})
	return nil
}

func (a *API) agentRuns(w http.ResponseWriter, r *http.Request) error {
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return err
	}
	runs, err := a.d.Store.Runs(m.ID)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []store.Report{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": m.ID, "runs": runs})
	return nil
}

type hostFailure struct {
	Host    string `json:"host"`
	Message string `json:"message"`
}

type itemCompliance struct {
	ID            string         `json:"id"`
	Kind          string         `json:"kind"`
	Counts        map[string]int `json:"counts"` // status → hosts
	Failed        []hostFailure  `json:"failed,omitempty"`
	Hosts         int            `json:"hosts"` // the hosts the policy asks it of
	NotReportedBy int            `json:"not_reported_by"`
	// Outdated are the hosts counted pending because their last report is
	// of an earlier revision: they have not reported on this one yet.
	Outdated int `json:"outdated"`
}

// currentReport is m's last report when it is of revision want — the
// office's current revision, which an agent's own variant shares — and
// nil otherwise: a report of an earlier revision says how the agent ran a
// policy it no longer has, not the one asked of it now. An agent's
// compliance (agentView) and an office's (officeCompliance) both judge by
// it.
func currentReport(m *store.Member, want uint64) *store.Report {
	if m.Report == nil || m.Report.Revision != want {
		return nil
	}
	return m.Report
}

// officeCompliance counts, per item of the office's current policy, how
// many of the hosts it applies to (every agent, or the agents a named
// policy gives it to) last reported it compliant, pending, failed (with
// why) or not applicable, and how many have not reported it yet. Only a
// report of the current revision counts (currentReport): a host whose
// last report is of an earlier one has every item counted pending
// (outdated), whatever it said then.
func (a *API) officeCompliance(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	if _, err := a.d.Store.Office(office); err != nil {
		return err
	}
	members, err := a.d.Store.Members(office)
	if err != nil {
		return err
	}
	// What the policy asks, office-wide and of each agent with its own.
	var wide []*wire.Item
	variants := map[string]bool{}
	var rev uint64
	p, err := a.d.Store.Policy(office)
	switch {
	case err == nil:
		pol, err := decodeSigned(p.Signed)
		if err != nil {
			return fmt.Errorf("decode stored policy of %s: %w", office, err)
		}
		wide, rev = pol.GetItems(), p.Revision
		for _, id := range pol.GetVariantAgents() {
			variants[id] = true
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	items := map[string]*itemCompliance{}
	hosts, outdated := 0, 0
	for _, m := range members {
		if m.Role == "relay" {
			continue
		}
		hosts++
		report := currentReport(&m, rev)
		behind := rev > 0 && report == nil && m.Report != nil
		if behind {
			outdated++
		}
		asked := wide
		if variants[m.ID] {
			v, err := a.d.Store.Variant(office, m.ID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if v != nil && v.Revision == rev {
				own, err := decodeSigned(v.Signed)
				if err != nil {
					return fmt.Errorf("decode the policy of %s: %w", m.ID, err)
				}
				asked = own.GetItems()
			}
		}
		reported := map[string]store.ItemStatus{}
		if report != nil {
			for _, it := range report.Items {
				reported[it.ID] = it
			}
		}
		for _, want := range asked {
			ic := items[want.GetId()]
			if ic == nil {
				ic = &itemCompliance{ID: want.GetId(), Kind: want.GetKind(), Counts: map[string]int{}}
				items[want.GetId()] = ic
			}
			ic.Hosts++
			if behind {
				ic.Counts["pending"]++
				ic.Outdated++
				continue
			}
			it, ok := reported[want.GetId()]
			if !ok {
				ic.NotReportedBy++
				continue
			}
			ic.Counts[it.Status]++
			if it.Status == "failed" && len(ic.Failed) < 20 {
				ic.Failed = append(ic.Failed, hostFailure{Host: m.Hostname, Message: it.Message})
			}
		}
	}
	out := make([]itemCompliance, 0, len(items))
	for _, ic := range items {
		out = append(out, *ic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"office": office, "revision": rev, "hosts": hosts, "outdated": outdated, "items": out})
	return nil
}

// RunRules evaluates the approval rules every interval until ctx ends.
//
// Each round also signs what a change stored and never signed (Reconcile):
// the first round runs at start.
func (a *API) RunRules(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if added, err := a.EvaluateRules(time.Now().UTC()); err != nil {
			a.log.Error("evaluate patch approval rules", "err", err)
		} else if len(added) > 0 {
			a.log.Info("patch approval rules approved patches", "approvals", len(added))
		}
		if _, err := a.Reconcile(); err != nil {
			a.log.Error("sign changes left unsigned", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ComplianceCollector counts, at each scrape, the items of every office's
// agents' last reports by status, and the patches they miss.
func (a *API) ComplianceCollector() prometheus.Collector { return complianceCollector{a} }

type complianceCollector struct{ a *API }

var (
	itemsDesc = prometheus.NewDesc("outpost_coordinator_items",
		"Policy items in agents' last reports, by office and status (compliant, pending, failed, not_applicable); the items of a report older than the office's current revision count as pending.", []string{"office", "status"}, nil)
	missingDesc = prometheus.NewDesc("outpost_coordinator_patches_missing",
		"Patch items agents of the office report not installed (missing, pending or failed).", []string{"office"}, nil)
)

func (c complianceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- itemsDesc
	ch <- missingDesc
}

// Collect reads the store's running tallies of the agents' reports
// (store.ReportTallies): decoding every member with its report cost each
// scrape the fleet's size.
func (c complianceCollector) Collect(ch chan<- prometheus.Metric) {
	tallies, err := c.a.d.Store.ReportTallies()
	if err != nil {
		c.a.log.Error("compliance metrics", "err", err)
		return
	}
	current, err := c.a.revisions()
	if err != nil {
		c.a.log.Error("compliance metrics", "err", err)
		return
	}
	counts := map[[2]string]int{}
	missing := map[string]int{}
	for office, byRev := range tallies {
		missing[office] = 0 // named even when nothing is missing
		for _, t := range byRev {
			// What a host said of an earlier revision is not an answer
			// about the current one (currentReport): its items are pending.
			if t.Revision != current[office] {
				for _, n := range t.Items {
					counts[[2]string{office, "pending"}] += n
				}
				for _, n := range t.Patches {
					missing[office] += n
				}
				continue
			}
			for status, n := range t.Items {
				counts[[2]string{office, status}] += n
			}
			for status, n := range t.Patches {
				if status != "compliant" && status != "not_applicable" {
					missing[office] += n
				}
			}
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(itemsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for office, n := range missing {
		ch <- prometheus.MustNewConstMetric(missingDesc, prometheus.GaugeValue, float64(n), office)
	}
}
