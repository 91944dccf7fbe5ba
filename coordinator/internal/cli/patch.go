package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/outposthq/outpost/pkg/config"
)

type patchInfo struct {
	ID              string   `json:"id"`
	Title           string   `json:"title"`
	Severity        string   `json:"severity"`
	Package         string   `json:"package"`
	FixedVersion    string   `json:"fixed_version"`
	Artifact        string   `json:"artifact"`
	RebootRequired  bool     `json:"reboot_required"`
	RollbackAllowed bool     `json:"rollback_allowed"`
	Supersedes      []string `json:"supersedes"`
}

type approvalInfo struct {
	Patch  string `json:"patch"`
	Office string `json:"office"`
	By     string `json:"by"`
	Window string `json:"window"`
	Reboot string `json:"reboot"`
	At     stamp  `json:"at"`
}

type ruleInfo struct {
	Name        string   `json:"name"`
	MinSeverity string   `json:"min_severity"`
	TestOffice  string   `json:"test_office"`
	AfterDays   int      `json:"after_days"`
	Offices     []string `json:"offices"`
}

type runItem struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Changed bool   `json:"changed"`
}

type runInfo struct {
	Revision uint64    `json:"revision"`
	At       stamp     `json:"at"`
	Items    []runItem `json:"items"`
}

func patchPath(id string) string { return "/v1/patches/" + url.PathEscape(id) }

// scheduleFlags are the window and reboot policy of approvals and rules.
func scheduleFlags(fs *flag.FlagSet) (window, reboot *string) {
	window = fs.String("window", "", "deployment `WINDOW` HH:MM-HH:MM in the office's time zone, e.g. 22:00-04:00 (default any time)")
	reboot = fs.String("reboot", "", "`POLICY` when a patch needs a reboot: never, if-needed-inside-window or notify-only (default never)")
	return window, reboot
}

func patchCommands() []*command {
	return []*command{
		{
			name: "patch import", args: "FEED", minArgs: 1, maxArgs: 1,
			summary: "import patches from a YAML or JSON feed into the catalog",
			timeout: defaultTimeout,
			help: `FEED - reads standard input. Every entry is checked (fields, severity, that its
artifact was pushed, that supersedes forms no cycle); one bad entry refuses the
whole feed and nothing is imported. Entries with a known id replace it.

Feed format:
  patches:
    - id: OUT-2026-001
      title: hello fixes CVE-2026-1234
      severity: high            # low, medium, high, critical
      package: hello
      fixed_version: 2.0.0
      artifact: <sha256 from outpost artifact push>
      reboot_required: false
      rollback_allowed: true
      supersedes: [OUT-2025-017]

Examples:
  outpost patch import vendor-feed.yaml
  curl -s https://vendor.example/feed.json | outpost patch import -
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					var src io.Reader = e.stdin
					shown := "standard input"
					if args[0] != "-" {
						f, err := os.Open(args[0])
						if err != nil {
							return fmt.Errorf("open the feed: %w", err)
						}
						defer f.Close()
						src, shown = f, args[0]
					}
					body, err := io.ReadAll(io.LimitReader(src, 4<<20+1))
					if err != nil {
						return fmt.Errorf("read the feed from %s: %w", shown, err)
					}
					req, err := e.api.newRequest(ctx, http.MethodPost, "/v1/patches/import", nil, strings.NewReader(string(body)))
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", "application/yaml")
					raw, err := e.api.do(req)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Added   int      `json:"added"`
						Updated int      `json:"updated"`
						Patches []string `json:"patches"`
					}
					if err := decode(raw, "import", &out); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "imported %s from %s: %d new, %d updated\n", plural(len(out.Patches), "patch"), shown, out.Added, out.Updated)
					return err
				}
			},
		},
		{
			name: "patch list", maxArgs: 0,
			summary: "list the patch catalog",
			timeout: defaultTimeout,
			help:    "Examples:\n  outpost patch list\n  outpost patch list --output json\n",
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/patches", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Patches []patchInfo `json:"patches"`
					}
					if err := decode(raw, "patches", &out); err != nil {
						return err
					}
					rows := [][]string{}
					for _, p := range out.Patches {
						rows = append(rows, []string{p.ID, p.Severity, p.Package + " " + p.FixedVersion, yesNo(p.RebootRequired),
							yesNo(p.RollbackAllowed), orDash(strings.Join(p.Supersedes, ",")), orDash(p.Title)})
					}
					return writeTable(e.stdout, []string{"ID", "SEVERITY", "FIXED IN", "REBOOT", "ROLLBACK", "SUPERSEDES", "TITLE"}, rows)
				}
			},
		},
		{
			name: "patch approve", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "approve a patch for an office; its agents install it in their window",
			timeout: defaultTimeout,
			help: `The office's policy gets a new revision with the patch in it (unless a patch
approved for the office supersedes it). Agents install it only inside the
window, read in the office's time zone, and report it pending until then.

Examples:
  outpost patch approve OUT-2026-001 --office berlin
  outpost patch approve OUT-2026-001 --office berlin --window 22:00-04:00 --reboot if-needed-inside-window
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office to approve it for (required)")
				window, reboot := scheduleFlags(fs)
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					raw, err := e.api.send(ctx, http.MethodPost, patchPath(args[0])+"/approve",
						map[string]any{"office": *officeName, "window": *window, "reboot": *reboot})
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Added    bool   `json:"added"`
						Revision uint64 `json:"revision"`
					}
					if err := decode(raw, "approval", &out); err != nil {
						return err
					}
					what := "approved"
					if !out.Added {
						what = "was already approved"
					}
					_, err = fmt.Fprintf(e.stdout, "patch %s %s for office %s (policy revision %d)\n", args[0], what, *officeName, out.Revision)
					return err
				}
			},
		},
		{
			name: "patch revoke", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "withdraw a patch's approval for an office",
			timeout: defaultTimeout,
			help: `Agents stop installing it; an installed patch stays. To roll it back, name it
in the office's policy with state: absent (where the patch allows rollback).

Examples:
  outpost patch revoke OUT-2026-001 --office berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office (required)")
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					req, err := e.api.newRequest(ctx, http.MethodDelete, patchPath(args[0])+"/approve", url.Values{"office": {*officeName}}, nil)
					if err != nil {
						return err
					}
					raw, err := e.api.do(req)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					_, err = fmt.Fprintf(e.stdout, "patch %s is no longer approved for office %s\n", args[0], *officeName)
					return err
				}
			},
		},
		{
			name: "patch rm", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "remove a patch from the catalog",
			timeout: defaultTimeout,
			help: `Every office's agents stop installing it and scanning for it; where it is
installed it stays. The coordinator refuses while a policy names the patch
(the error names the policies), and while an office approves it unless
--revoke takes those approvals with it. A feed that still lists the patch adds
it back on its next import. Its artifact stays on the file server; remove it
with 'outpost artifact rm' once nothing else uses it.

Examples:
  outpost patch rm OUT-2026-001
  outpost patch rm OUT-2026-001 --revoke
`,
			setup: func(fs *flag.FlagSet) runFunc {
				revoke := fs.Bool("revoke", false, "revoke the patch's approvals in every office with it")
				return func(ctx context.Context, e *env, args []string) error {
					q := url.Values{}
					if *revoke {
						q.Set("revoke", "true")
					}
					req, err := e.api.newRequest(ctx, http.MethodDelete, patchPath(args[0]), q, nil)
					if err != nil {
						return err
					}
					raw, err := e.api.do(req)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Revoked    []string `json:"revoked"`
						Superseded []string `json:"superseded"`
						Artifact   string   `json:"artifact"`
					}
					if err := decode(raw, "removed patch", &out); err != nil {
						return err
					}
					var b strings.Builder
					fmt.Fprintf(&b, "patch %s removed from the catalog; every office's policy is signed again without it\n", args[0])
					if len(out.Revoked) > 0 {
						fmt.Fprintf(&b, "  approvals revoked for %s: %s\n", plural(len(out.Revoked), "office"), strings.Join(out.Revoked, ", "))
					}
					if len(out.Superseded) > 0 {
						fmt.Fprintf(&b, "  it superseded %s: where approved, agents are told of %s again\n", strings.Join(out.Superseded, ", "),
							map[bool]string{true: "it", false: "them"}[len(out.Superseded) == 1])
					}
					if out.Artifact != "" {
						fmt.Fprintf(&b, "  its artifact stays on the file server: outpost artifact rm %s removes it once nothing else uses it\n", out.Artifact)
					}
					_, err = io.WriteString(e.stdout, b.String())
					return err
				}
			},
		},
		{
			name: "patch approvals", maxArgs: 0,
			summary: "list patch approvals, explicit and by rule",
			timeout: defaultTimeout,
			help:    "Examples:\n  outpost patch approvals\n  outpost patch approvals --office berlin\n",
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "only this office's approvals, by `NAME`")
				return func(ctx context.Context, e *env, args []string) error {
					q := url.Values{}
					if *officeName != "" {
						q.Set("office", *officeName)
					}
					raw, err := e.api.get(ctx, "/v1/patch-approvals", q)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Approvals []approvalInfo `json:"approvals"`
					}
					if err := decode(raw, "approvals", &out); err != nil {
						return err
					}
					rows := [][]string{}
					for _, a := range out.Approvals {
						rows = append(rows, []string{a.Office, a.Patch, a.By, orDash(a.Window), orDash(a.Reboot), timeAndAge(e.now(), a.At.Time)})
					}
					return writeTable(e.stdout, []string{"OFFICE", "PATCH", "BY", "WINDOW", "REBOOT", "APPROVED"}, rows)
				}
			},
		},
		{
			name: "patch rule", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "create or replace an approval rule",
			timeout: defaultTimeout,
			help: `A rule approves every patch of at least --min-severity in --test-office at
once, and in the --office offices (every other office if none is given) once
every agent of the test office has had it installed, and nothing failed, for
--after-days days. The coordinator evaluates rules periodically; "outpost patch
evaluate" does it now.

Examples:
  outpost patch rule high-first --min-severity high --test-office lab --after-days 3
  outpost patch rule critical --min-severity critical --test-office lab --after-days 1 --office berlin --office paris
`,
			setup: func(fs *flag.FlagSet) runFunc {
				minSeverity := fs.String("min-severity", "", "`SEVERITY` at least: low, medium, high or critical (required)")
				testOffice := fs.String("test-office", "", "`NAME` of the office that gets patches first (required)")
				afterDays := config.Int(fs, "after-days", 3, "`DAYS` installed cleanly in the test office before the other offices get it")
				var offices stringList
				fs.Var(&offices, "office", "`NAME` of an office the rule approves for; repeat for more (default all but the test office)")
				window, reboot := scheduleFlags(fs)
				return func(ctx context.Context, e *env, args []string) error {
					if *minSeverity == "" || *testOffice == "" {
						return usagef("missing --min-severity or --test-office")
					}
					body := map[string]any{"min_severity": *minSeverity, "test_office": *testOffice, "after_days": *afterDays,
						"offices": []string(offices), "window": *window, "reboot": *reboot}
					raw, err := e.api.send(ctx, http.MethodPut, "/v1/patch-rules/"+url.PathEscape(args[0]), body)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Approved []approvalInfo `json:"approved"`
						Warnings []string       `json:"warnings"`
					}
					if err := decode(raw, "rule", &out); err != nil {
						return err
					}
					for _, w := range out.Warnings {
						fmt.Fprintln(e.stderr, "warning:", w)
					}
					if _, err := fmt.Fprintf(e.stdout, "rule %s saved: %s and above go to %s now, elsewhere after %s clean\n", args[0], *minSeverity, *testOffice, plural(*afterDays, "day")); err != nil {
						return err
					}
					for _, a := range out.Approved {
						if _, err := fmt.Fprintf(e.stdout, "approved %s for %s (%s)\n", a.Patch, a.Office, a.By); err != nil {
							return err
						}
					}
					return nil
				}
			},
		},
		{
			name: "patch rules", maxArgs: 0,
			summary: "list the approval rules",
			timeout: defaultTimeout,
			help:    "Examples:\n  outpost patch rules\n",
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/patch-rules", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Rules []ruleInfo `json:"rules"`
					}
					if err := decode(raw, "rules", &out); err != nil {
						return err
					}
					rows := [][]string{}
					for _, r := range out.Rules {
						targets := strings.Join(r.Offices, ",")
						if targets == "" {
							targets = "all others"
						}
						rows = append(rows, []string{r.Name, r.MinSeverity, r.TestOffice, fmt.Sprint(r.AfterDays), targets})
					}
					return writeTable(e.stdout, []string{"RULE", "MIN SEVERITY", "TEST OFFICE", "AFTER DAYS", "OFFICES"}, rows)
				}
			},
		},
		{
			name: "patch evaluate", maxArgs: 0,
			summary: "evaluate the approval rules now",
			timeout: defaultTimeout,
			help:    "Examples:\n  outpost patch evaluate\n",
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodPost, "/v1/patch-rules/evaluate", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Approved []approvalInfo `json:"approved"`
					}
					if err := decode(raw, "evaluation", &out); err != nil {
						return err
					}
					if len(out.Approved) == 0 {
						_, err := fmt.Fprintln(e.stdout, "no new approvals")
						return err
					}
					for _, a := range out.Approved {
						if _, err := fmt.Fprintf(e.stdout, "approved %s for %s (%s)\n", a.Patch, a.Office, a.By); err != nil {
							return err
						}
					}
					return nil
				}
			},
		},
		{
			name: "patch missing", maxArgs: 0,
			summary: "patches hosts have not installed, by host and by office",
			timeout: defaultTimeout,
			help: `A patch is missing on a host whose last report has it missing, waiting for its
window (pending) or failed; the reason is shown.

Examples:
  outpost patch missing
  outpost patch missing --office berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "only this office, by `NAME`")
				return func(ctx context.Context, e *env, args []string) error {
					q := url.Values{}
					if *officeName != "" {
						q.Set("office", *officeName)
					}
					raw, err := e.api.get(ctx, "/v1/patches-missing", q)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Hosts []struct {
							Hostname string `json:"hostname"`
							Office   string `json:"office"`
							Missing  []struct {
								Patch   string `json:"patch"`
								Status  string `json:"status"`
								Message string `json:"message"`
							} `json:"missing"`
						} `json:"hosts"`
						Offices []struct {
							Office  string         `json:"office"`
							Hosts   int            `json:"hosts"`
							Missing map[string]int `json:"missing"`
						} `json:"offices"`
					}
					if err := decode(raw, "missing patches", &out); err != nil {
						return err
					}
					rows := [][]string{}
					for _, o := range out.Offices {
						ids := make([]string, 0, len(o.Missing))
						for id := range o.Missing {
							ids = append(ids, id)
						}
						sort.Strings(ids)
						for _, id := range ids {
							rows = append(rows, []string{o.Office, id, fmt.Sprintf("%d of %d", o.Missing[id], o.Hosts)})
						}
					}
					if err := writeTable(e.stdout, []string{"OFFICE", "PATCH", "HOSTS MISSING IT"}, rows); err != nil {
						return err
					}
					fmt.Fprintln(e.stdout)
					rows = [][]string{}
					for _, h := range out.Hosts {
						for _, m := range h.Missing {
							rows = append(rows, []string{h.Hostname, h.Office, m.Patch, m.Status, orDash(m.Message)})
						}
					}
					return writeTable(e.stdout, []string{"HOST", "OFFICE", "PATCH", "STATUS", "WHY"}, rows)
				}
			},
		},
		{
			name: "agent runs", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "an agent's last runs, newest first, with each item's outcome",
			timeout: defaultTimeout,
			help:    "ID is the agent's id (ag- and 16 hex digits, or its start from 4 hex digits on,\nwhen no other id starts so) or its hostname, as agent list and agent search\nshow them.\n\nExamples:\n  outpost agent runs ag-3f9c2a0011223344\n  outpost agent runs ag-3f9c2a0011223344 --output json\n",
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, agentPath(args[0])+"/runs", nil)
					if err != nil {
						return agentNotFound(ctx, e, args[0], err)
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Runs []runInfo `json:"runs"`
					}
					if err := decode(raw, "runs", &out); err != nil {
						return err
					}
					rows := [][]string{}
					for _, r := range out.Runs {
						for _, it := range r.Items {
							changed := ""
							if it.Changed {
								changed = "changed"
							}
							rows = append(rows, []string{timeAndAge(e.now(), r.At.Time), fmt.Sprint(r.Revision), it.ID, it.Status, orDash(changed), orDash(it.Message)})
						}
					}
					return writeTable(e.stdout, []string{"RUN", "REVISION", "ITEM", "STATUS", "CHANGED", "MESSAGE"}, rows)
				}
			},
		},
		{
			name: "office compliance", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "each item of an office: hosts compliant, pending, failed (why), not applicable",
			timeout: defaultTimeout,
			help: `Every item of the office's current policy, with the hosts it is asked of
(HOSTS: every agent, or those a named policy gives it to) and how many of
them last reported it compliant, pending, failed (and why), not applicable,
or have not reported it yet. Only reports of the current revision count: a
host whose last report is of an earlier revision has not run this one yet,
and its items count as pending whatever it reported then.

Examples:
  outpost office compliance berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, officePath(args[0])+"/compliance", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Revision *uint64 `json:"revision"` // absent from older coordinators: then the table alone
						Hosts    int     `json:"hosts"`
						Outdated int     `json:"outdated"` // hosts whose last report is of an earlier revision
						Items    []struct {
							ID     string         `json:"id"`
							Hosts  int            `json:"hosts"`
							Counts map[string]int `json:"counts"`
							Failed []struct {
								Host    string `json:"host"`
								Message string `json:"message"`
							} `json:"failed"`
							NotReportedBy int `json:"not_reported_by"`
						} `json:"items"`
					}
					if err := decode(raw, "compliance", &out); err != nil {
						return err
					}
					switch {
					case out.Hosts == 0:
						_, err := fmt.Fprintf(e.stdout, "office %s has no agents yet\n", args[0])
						return err
					case out.Revision != nil && *out.Revision == 0:
						_, err := fmt.Fprintf(e.stdout, "office %s has no policy yet: nothing is asked of its %s\n", args[0], plural(out.Hosts, "agent"))
						return err
					}
					rows := [][]string{}
					for _, it := range out.Items {
						why := []string{}
						for _, f := range it.Failed {
							why = append(why, f.Host+": "+f.Message)
						}
						rows = append(rows, []string{it.ID, fmt.Sprint(it.Hosts), fmt.Sprint(it.Counts["compliant"]), fmt.Sprint(it.Counts["pending"]),
							fmt.Sprint(it.Counts["failed"]), fmt.Sprint(it.Counts["not_applicable"]), fmt.Sprint(it.NotReportedBy), orDash(strings.Join(why, "; "))})
					}
					if err := writeTable(e.stdout, []string{"ITEM", "HOSTS", "COMPLIANT", "PENDING", "FAILED", "N/A", "NO REPORT", "WHY FAILED"}, rows); err != nil || out.Outdated == 0 || out.Revision == nil {
						return err
					}
					why := "have not reported on revision %d yet: their last reports are of an earlier revision, so their items count as pending"
					if out.Outdated == 1 {
						why = "has not reported on revision %d yet: its last report is of an earlier revision, so its items count as pending"
					}
					_, err = fmt.Fprintf(e.stdout, "%d of %s "+why+"\n", out.Outdated, plural(out.Hosts, "host"), *out.Revision)
					return err
				}
			},
		},
	}
}
