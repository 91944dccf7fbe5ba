package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
)

// computer is a hostname added to an office before it enrolled.
type computer struct {
	Hostname string `json:"hostname"`
	Office   string `json:"office"`
	Added    stamp  `json:"added"`
	Member   string `json:"member"`
	Enrolled stamp  `json:"enrolled"`
}

func computerCommands() []*command {
	return []*command{
		{
			name: "office add-computer", args: "OFFICE HOSTNAME...", minArgs: 2, maxArgs: -1,
			summary: "add computers to an office by hostname before they enrol",
			timeout: defaultTimeout,
			help: `When a computer of that hostname enrols, with a token of any office, it goes
to OFFICE: that becomes its home office. The name matches in any case, and a
short name also matches the first label of a full one (pc-17 matches
pc-17.corp.example). A hostname is in one office at most.

Examples:
  outpost office add-computer berlin pc-17 pc-18 laptop-anna
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodPost, officePath(args[0])+"/computers", map[string]any{"hostnames": args[1:]})
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var list struct {
						Computers []computer `json:"computers"`
					}
					if err := decode(raw, "computer list", &list); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "%s in office %s; they go there when they enrol\n", plural(len(list.Computers), "computer"), args[0])
					return err
				}
			},
		},
		{
			name: "office computers", args: "OFFICE", minArgs: 1, maxArgs: 1,
			summary: "list the computers added to an office by hostname",
			timeout: defaultTimeout,
			help: `MEMBER is the agent that enrolled under the hostname, or - while none has.

Examples:
  outpost office computers berlin
  outpost office computers berlin --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, officePath(args[0])+"/computers", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var list struct {
						Computers []computer `json:"computers"`
					}
					if err := decode(raw, "computer list", &list); err != nil {
						return err
					}
					if len(list.Computers) == 0 {
						_, err := fmt.Fprintf(e.stderr, "office %s has no computers added by name; add some with: outpost office add-computer %s HOSTNAME...\n", args[0], args[0])
						return err
					}
					rows := make([][]string, 0, len(list.Computers))
					for _, c := range list.Computers {
						enrolled := "-"
						if !c.Enrolled.IsZero() {
							enrolled = ago(e.now(), c.Enrolled.Time)
						}
						rows = append(rows, []string{c.Hostname, ago(e.now(), c.Added.Time), orDash(c.Member), enrolled})
					}
					return writeTable(e.stdout, []string{"HOSTNAME", "ADDED", "MEMBER", "ENROLLED"}, rows)
				}
			},
		},
		{
			name: "office rm-computer", args: "OFFICE HOSTNAME", minArgs: 2, maxArgs: 2,
			summary: "take a hostname out of an office's list; an enrolled agent stays where it is",
			timeout: defaultTimeout,
			help: `Examples:
  outpost office rm-computer berlin pc-17
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					if _, err := e.api.send(ctx, http.MethodDelete, officePath(args[0])+"/computers/"+url.PathEscape(args[1]), nil); err != nil {
						return err
					}
					if e.json {
						return nil
					}
					_, err := fmt.Fprintf(e.stdout, "computer %s taken out of office %s\n", args[1], args[0])
					return err
				}
			},
		},
	}
}
