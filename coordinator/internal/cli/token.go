package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outposthq/outpost/pkg/config"
)

func tokenCommands() []*command {
	return []*command{
		{
			name: "token create", minArgs: 0, maxArgs: 0,
			summary: "create an enrollment token for an office",
			timeout: defaultTimeout,
			help: `The token's secret is shown only once. In table mode it is printed alone on
standard output and its details go to standard error, so a script can keep it.

Examples:
  outpost token create --office berlin
  TOKEN=$(outpost token create --office berlin --uses 20 --ttl 72h)
  outpost token create --office berlin --role relay --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office the token enrolls into (required)")
				ttl := newTTLFlag(fs, "ttl", 24*time.Hour, "how long the token stays valid, a `DURATION` such as 72h or 3d")
				uses := config.Int(fs, "uses", 1, "how many machines (`N`) may enroll with it")
				role := fs.String("role", "agent", "`ROLE` of what enrolls with it: agent or relay")
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					if *ttl <= 0 {
						return usagef("--ttl %s: want a positive duration such as 24h or 3d", *ttl)
					}
					if *uses < 1 {
						return usagef("--uses %d: want 1 or more", *uses)
					}
					if *role != "agent" && *role != "relay" {
						return usagef("--role %q: want agent or relay", *role)
					}
					body := map[string]any{"ttl": shortDuration(*ttl), "uses": *uses, "role": *role}
					raw, err := e.api.send(ctx, http.MethodPost, officePath(*officeName)+"/tokens", body)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var t enrollToken
					if err := decode(raw, "token", &t); err != nil {
						return err
					}
					if t.Token == "" {
						return fmt.Errorf("the coordinator's answer holds no token; do CLI and coordinator versions match?")
					}
					if _, err := fmt.Fprintln(e.stdout, t.Token); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stderr, "token %s for office %s: role %s, %s, expires %s (%s); the secret above is shown only now\n",
						t.ID, t.Office, t.Role, plural(t.Uses, "use"), t.Expires.Format(time.RFC3339), until(e.now(), t.Expires.Time))
					return err
				}
			},
		},
		{
			name: "token list", maxArgs: 0,
			summary: "list an office's enrollment tokens (without their secrets)",
			timeout: defaultTimeout,
			help: `Examples:
  outpost token list --office berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office whose tokens to list (required)")
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					raw, err := e.api.get(ctx, officePath(*officeName)+"/tokens", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var list struct {
						Tokens []enrollToken `json:"tokens"`
					}
					if err := decode(raw, "token list", &list); err != nil {
						return err
					}
					if len(list.Tokens) == 0 {
						_, err := fmt.Fprintf(e.stderr, "office %s has no tokens; create one with: outpost token create --office %s\n", *officeName, *officeName)
						return err
					}
					rows := make([][]string, 0, len(list.Tokens))
					for _, t := range list.Tokens {
						rows = append(rows, []string{t.ID, t.Role, until(e.now(), t.Expires.Time),
							strconv.Itoa(t.Used) + "/" + strconv.Itoa(t.Uses)})
					}
					return writeTable(e.stdout, []string{"ID", "ROLE", "EXPIRES", "USED"}, rows)
				}
			},
		},
	}
}
