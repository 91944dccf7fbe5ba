package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/outposthq/outpost/pkg/safetext"
)

// Endpoint scope: named policies that target offices, agents and labels,
// the labels themselves, and what an agent ends up with.

type (
	policyTargets struct {
		Offices []string `json:"offices"`
		Agents  []string `json:"agents"`
		Labels  []string `json:"labels"`
	}
	namedPolicy struct {
		Name      string            `json:"name"`
		Priority  int               `json:"priority"`
		Targets   policyTargets     `json:"targets"`
		Applied   stamp             `json:"applied"`
		YAML      string            `json:"yaml"`
		Items     []any             `json:"items"`
		Published map[string]uint64 `json:"published"`
		Unchanged map[string]uint64 `json:"unchanged"`
		Computers []string          `json:"computers"`
		Warnings  []string          `json:"warnings"`
	}
	effective struct {
		Agent     string            `json:"agent"`
		Hostname  string            `json:"hostname"`
		Office    string            `json:"office"`
		Revision  int64             `json:"revision"`
		Variant   bool              `json:"variant"`
		Labels    map[string]string `json:"labels"`
		Items     []effectiveItem   `json:"items"`
		Conflicts []struct {
			Item     string   `json:"item"`
			Level    string   `json:"level"`
			Priority int      `json:"priority"`
			Policies []string `json:"policies"`
		} `json:"conflicts"`
	}
	effectiveItem struct {
		ID         string   `json:"id"`
		Policy     string   `json:"policy"`
		Level      string   `json:"level"`
		Priority   int      `json:"priority"`
		Overridden []string `json:"overridden"`
		Item       struct {
			Kind       string `json:"kind"`
			State      string `json:"state"`
			ReportOnly bool   `json:"report_only"`
		} `json:"item"`
	}
)

func policyPath(name string) string { return "/v1/policies/" + url.PathEscape(name) }

func scopeCommands() []*command {
	return []*command{
		{
			name: "policy list", maxArgs: 0,
			summary: "list named policies: what each targets and its priority",
			timeout: defaultTimeout,
			help: `Offices' own policies (policy apply --office) are not listed: each is the
policy "office:NAME" of its office.

Examples:
  outpost policy list
  outpost policy list --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/policies", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct{ Policies []namedPolicy }
					if err := decode(raw, "policies", &out); err != nil {
						return err
					}
					if len(out.Policies) == 0 {
						_, err := fmt.Fprintln(e.stderr, "no named policies; apply one with: outpost policy apply --name NAME FILE")
						return err
					}
					rows := [][]string{}
					for _, p := range out.Policies {
						rows = append(rows, []string{p.Name, strconv.Itoa(p.Priority), targetsText(p.Targets), ago(e.now(), p.Applied.Time)})
					}
					return writeTable(e.stdout, []string{"NAME", "PRIORITY", "TARGETS", "APPLIED"}, rows)
				}
			},
		},
		{
			name: "policy rm", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "remove a named policy; the computers it targeted get new revisions",
			timeout: defaultTimeout,
			help: `Examples:
  outpost policy rm kiosks
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					req, err := e.api.newRequest(ctx, http.MethodDelete, policyPath(args[0]), nil, nil)
					if err != nil {
						return err
					}
					if _, err := e.api.do(req); err != nil {
						return err
					}
					if e.json {
						return writeJSONValue(e.stdout, map[string]string{"removed": args[0]})
					}
					_, err = fmt.Fprintf(e.stdout, "policy %s removed\n", args[0])
					return err
				}
			},
		},
		{
			name: "policy effective", args: "AGENT", minArgs: 1, maxArgs: 1,
			summary: "show an agent's effective policy: each item and the policy it comes from",
			timeout: defaultTimeout,
			help: `AGENT is an id or a hostname. Precedence, highest first: a policy that targets
the agent by id or hostname, then one that targets one of its labels, then one
that targets its office (the office's own policy among them); within a level
the higher priority. OVERRIDES are the policies whose version of the item lost.
"patches" are the patches the coordinator adds: the approved ones, and the
catalog's others with STATE report-only (agents report whether they are
missing but never install them).

Examples:
  outpost policy effective pc-17
  outpost policy effective ag-3f9c2a --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, agentPath(args[0])+"/policy", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var p effective
					if err := decode(raw, "effective policy", &p); err != nil {
						return err
					}
					delivery := "the office's policy"
					if p.Variant {
						delivery = "a policy of its own"
					}
					fields := [][2]string{
						{"agent", p.Agent + " (" + p.Hostname + ")"},
						{"office", p.Office},
						{"labels", orDash(labelsText(p.Labels))},
						{"revision", fmt.Sprintf("%d, %s", p.Revision, delivery)},
					}
					if err := writeFields(e.stdout, fields); err != nil {
						return err
					}
					fmt.Fprintln(e.stdout)
					rows := [][]string{}
					for _, it := range p.Items {
						prio := ""
						if it.Policy != "patches" {
							prio = strconv.Itoa(it.Priority)
						}
						state := strings.ToLower(strings.TrimPrefix(it.Item.State, "STATE_"))
						if it.Item.ReportOnly {
							state = "report-only" // "present" would promise an install
						}
						rows = append(rows, []string{it.ID, state, it.Policy, it.Level, prio, orDash(strings.Join(it.Overridden, ", "))})
					}
					if len(rows) == 0 {
						_, err := fmt.Fprintln(e.stdout, "no items")
						return err
					}
					if err := writeTable(e.stdout, []string{"ITEM", "STATE", "FROM", "LEVEL", "PRIORITY", "OVERRIDES"}, rows); err != nil {
						return err
					}
					for _, c := range p.Conflicts {
						fmt.Fprintf(e.stderr, "conflict: %s is set differently by %s (%s level, priority %d)\n", c.Item, strings.Join(c.Policies, " and "), c.Level, c.Priority)
					}
					return nil
				}
			},
		},
		{
			name: "agent label", args: "AGENT LABEL...", minArgs: 2, maxArgs: -1,
			summary: "set or remove an agent's labels, which policies can target",
			timeout: defaultTimeout,
			help: `AGENT is an id or a hostname. Each LABEL is key=value, a plain key, or key-
to remove it. The coordinator refuses a label that would make two policies of
one level and priority set an item differently on the agent, naming them.

Examples:
  outpost agent label pc-17 kiosk floor=3
  outpost agent label ag-3f9c2a floor-
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					set := map[string]string{}
					remove := []string{}
					for _, l := range args[1:] {
						switch k, v, ok := strings.Cut(l, "="); {
						case ok:
							set[k] = v
						case strings.HasSuffix(l, "-"):
							remove = append(remove, strings.TrimSuffix(l, "-"))
						default:
							set[l] = ""
						}
					}
					raw, err := e.api.send(ctx, http.MethodPatch, agentPath(args[0])+"/labels", map[string]any{"set": set, "remove": remove})
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var a agent
					if err := decode(raw, "agent", &a); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "agent %s (%s) labels: %s\n", a.ID, safetext.Escape(a.Hostname), orDash(labelsText(a.Labels)))
					return err
				}
			},
		},
	}
}

func targetsText(t policyTargets) string {
	var parts []string
	for _, x := range []struct {
		what string
		list []string
	}{{"office", t.Offices}, {"agent", t.Agents}, {"label", t.Labels}} {
		for _, v := range x.list {
			parts = append(parts, x.what+" "+v)
		}
	}
	if len(parts) > 4 {
		parts = append(parts[:4], fmt.Sprintf("and %d more", len(parts)-4))
	}
	return strings.Join(parts, ", ")
}

func labelsText(labels map[string]string) string {
	var out []string
	for k, v := range labels {
		if v != "" {
			k += "=" + v
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// applyNamedPolicy applies a policy by name: its YAML names its targets.
func applyNamedPolicy(ctx context.Context, e *env, name, path string) error {
	yaml, shown, err := readPolicy(e, path)
	if err != nil {
		return err
	}
	raw, err := putPolicyYAML(ctx, e, policyPath(name), yaml, shown)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var p namedPolicy
	if err := decode(raw, "policy", &p); err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	var revs []string
	for o, r := range p.Published {
		revs = append(revs, fmt.Sprintf("%s revision %d", o, r))
	}
	sort.Strings(revs)
	published := "no office's computers are targeted yet"
	if len(revs) > 0 {
		published = strings.Join(revs, ", ")
	}
	var same []string
	for o, r := range p.Unchanged {
		same = append(same, fmt.Sprintf("%s stays at revision %d", o, r))
	}
	sort.Strings(same)
	switch {
	case len(same) > 0 && len(revs) == 0:
		published = "unchanged: " + strings.Join(same, ", ")
	case len(same) > 0:
		published += "; unchanged: " + strings.Join(same, ", ")
	}
	_, err = fmt.Fprintf(e.stdout, "policy %s applied (%s, priority %d): %s\n", p.Name, plural(len(p.Items), "item"), p.Priority, published)
	return err
}

// showNamedPolicy prints a named policy so that it can be edited and
// applied again.
func showNamedPolicy(ctx context.Context, e *env, name string) error {
	raw, err := e.api.get(ctx, policyPath(name), nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		// An office's own policy is shown with --office.
		if _, oerr := e.api.get(ctx, officePath(name), nil); oerr == nil {
			return fmt.Errorf("%w; office %s's own policy is shown with: outpost policy show --office %s", err, name, name)
		}
	}
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var p namedPolicy
	if err := decode(raw, "policy", &p); err != nil {
		return err
	}
	y := p.YAML
	if y != "" && !strings.HasSuffix(y, "\n") {
		y += "\n"
	}
	_, err = fmt.Fprintf(e.stdout, "# policy %s, applied %s, applies to %s now\n%s", p.Name, timeAndAge(e.now(), p.Applied.Time), plural(len(p.Computers), "computer"), y)
	return err
}

// readPolicy reads a policy file, or standard input for "-".
func readPolicy(e *env, path string) ([]byte, string, error) {
	var (
		src   io.Reader
		shown = path
	)
	if path == "-" {
		src, shown = e.stdin, "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, shown, fmt.Errorf("open the policy: %w", err)
		}
		defer f.Close()
		src = f
	}
	yaml, err := io.ReadAll(io.LimitReader(src, maxPolicy+1))
	if err != nil {
		return nil, shown, fmt.Errorf("read the policy from %s: %w", shown, err)
	}
	if len(yaml) > maxPolicy {
		return nil, shown, fmt.Errorf("the policy in %s is larger than 1 MiB, the coordinator's limit; split it or trim the file", shown)
	}
	return yaml, shown, nil
}
