package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// maxPolicy is the coordinator's limit on a policy body.
const maxPolicy = 1 << 20

func policyCommands() []*command {
	return []*command{
		{
			name: "policy apply", args: "FILE", minArgs: 1, maxArgs: 1,
			summary: "apply a policy YAML file to an office, or as a named policy with targets",
			timeout: defaultTimeout,
			help: `FILE - reads standard input. The coordinator checks the whole file and
refuses it with the line of the first problem; agents pick the new revision up
at once. Applying what the office's current revision carries already (the same
file again, or one that differs only in comments or layout) signs no new
revision: the office stays at its revision and no agent runs again.
See docs/api.md for the policy format.

With --office the file is the office's own policy. With --name it is a named
policy whose YAML says what it targets and its priority:

  targets: {offices: [berlin], agents: [pc-17], labels: [kiosk, "floor=3"]}
  priority: 10
  items: [...]

A policy that would set an item differently from another policy of the same
level (agent, label or office) and priority on any computer is refused, naming
both policies, the item and the computers.

Examples:
  outpost policy apply --office berlin berlin.yaml
  outpost policy show --office berlin | sed 's/1.0.0/1.0.1/' | outpost policy apply --office berlin -
  outpost policy apply --name kiosks kiosks.yaml
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office whose policy to replace")
				policyName := fs.String("name", "", "`NAME` of the named policy to create or replace")
				return func(ctx context.Context, e *env, args []string) error {
					switch {
					case *officeName == "" && *policyName == "":
						return usagef("missing --office NAME (an office's policy) or --name NAME (a named policy)")
					case *officeName != "" && *policyName != "":
						return usagef("give --office or --name, not both")
					case *policyName != "":
						return applyNamedPolicy(ctx, e, *policyName, args[0])
					}
					return applyPolicy(ctx, e, *officeName, args[0])
				}
			},
		},
		{
			name: "policy show", args: "[NAME]", maxArgs: 1,
			summary: "show an office's current policy, or a named policy",
			timeout: defaultTimeout,
			help: `Table mode prints the revision as a YAML comment and then the policy, so
the output can be edited and applied again.

Examples:
  outpost policy show --office berlin
  outpost policy show --office berlin > berlin.yaml
  outpost policy show kiosks
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office whose policy to show")
				return func(ctx context.Context, e *env, args []string) error {
					switch {
					case len(args) == 1 && *officeName != "":
						return usagef("give --office or a policy NAME, not both")
					case len(args) == 1:
						return showNamedPolicy(ctx, e, args[0])
					case *officeName == "":
						return usagef("missing --office NAME (or the NAME of a named policy)")
					}
					raw, err := e.api.get(ctx, officePath(*officeName)+"/policy", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var p policyInfo
					if err := decode(raw, "policy", &p); err != nil {
						return err
					}
					if p.Revision == 0 && strings.TrimSpace(p.YAML) == "" {
						_, err := fmt.Fprintf(e.stderr, "office %s has no policy yet; apply one with: outpost policy apply --office %s FILE\n", *officeName, *officeName)
						return err
					}
					y := p.YAML
					if y != "" && !strings.HasSuffix(y, "\n") {
						y += "\n"
					}
					_, err = fmt.Fprintf(e.stdout, "# office %s, revision %d, applied %s\n%s", *officeName, p.Revision, timeAndAge(e.now(), p.Applied.Time), y)
					return err
				}
			},
		},
	}
}

func applyPolicy(ctx context.Context, e *env, officeName, path string) error {
	var (
		src   io.Reader
		shown = path
	)
	if path == "-" {
		src, shown = e.stdin, "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open the policy: %w", err)
		}
		defer f.Close()
		src = f
	}
	yaml, err := io.ReadAll(io.LimitReader(src, maxPolicy+1))
	if err != nil {
		return fmt.Errorf("read the policy from %s: %w", shown, err)
	}
	if len(yaml) > maxPolicy {
		return fmt.Errorf("the policy in %s is larger than 1 MiB, the coordinator's limit; split the office or trim the file", shown)
	}
	raw, err := putPolicyYAML(ctx, e, officePath(officeName)+"/policy", yaml, shown)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var p struct {
		policyInfo
		Unchanged bool     `json:"unchanged"` // the office's current revision carries this policy already
		Warnings  []string `json:"warnings"`
	}
	if err := decode(raw, "policy", &p); err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	name := p.Office
	if name == "" {
		name = officeName
	}
	if p.Unchanged {
		_, err = fmt.Fprintf(e.stdout, "policy unchanged: office %s stays at revision %d (%s)\n", name, p.Revision, plural(len(p.Items), "item"))
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "office %s: revision %d applied (%s)\n", name, p.Revision, plural(len(p.Items), "item"))
	return err
}

// putPolicyYAML sends policy YAML read from shown to path. The coordinator
// names a bad line; the error names the file it is in too.
func putPolicyYAML(ctx context.Context, e *env, path string, yaml []byte, shown string) ([]byte, error) {
	req, err := e.api.newRequest(ctx, http.MethodPut, path, nil, bytes.NewReader(yaml))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/yaml")
	raw, err := e.api.do(req)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusBadRequest && strings.HasPrefix(ae.message, "line ") {
		return nil, &apiError{status: ae.status, message: shown + ": " + ae.message}
	}
	return raw, err
}
