package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
						rows = append(rows, []string{t.ID, t.Role, orDash(t.State), until(e.now(), t.Expires.Time),
							strconv.Itoa(t.Used) + "/" + strconv.Itoa(t.Uses)})
					}
					return writeTable(e.stdout, []string{"ID", "ROLE", "STATE", "EXPIRES", "USED"}, rows)
				}
			},
		},
		{
			name: "token revoke", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "revoke an enrollment token: nothing more enrols with it",
			timeout: defaultTimeout,
			help: `Use it when a token leaked or is no longer needed. Agents and relays that
enrolled with it stay enrolled; remove one with outpost agent rm. ID is the
token's id as token create and token list show it (never its secret).

Tokens that expired or were revoked are listed for 30 days, then deleted.

Examples:
  outpost token revoke --office berlin 3f9c2a00
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the token's office (required)")
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					if strings.HasPrefix(args[0], "opt_") {
						return usagef("that is a token's secret; give its id, as outpost token list --office %s shows it (and create a new token: the secret was shown)", *officeName)
					}
					raw, err := e.api.send(ctx, http.MethodDelete, officePath(*officeName)+"/tokens/"+url.PathEscape(args[0]), nil)
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
					_, err = fmt.Fprintf(e.stdout, "token %s of office %s revoked; %s enrolled with it and stay%s\n",
						t.ID, t.Office, plural(t.Used, "member"), map[bool]string{true: "s", false: ""}[t.Used == 1])
					return err
				}
			},
		},
	}
}
