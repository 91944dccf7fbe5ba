package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/didyoumean"
	"github.com/outposthq/outpost/pkg/safetext"
)

type userRow struct {
	Name                string    `json:"name"`
	Role                string    `json:"role"`
	Disabled            bool      `json:"disabled"`
	ForceServerSecurity bool      `json:"force_server_security"`
	HasPassword         bool      `json:"has_password"`
	Groups              []string  `json:"groups"`
	LockedUntil         time.Time `json:"locked_until"`
}

type groupRow struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Members     []string `json:"members"`
}

type grantRow struct {
	Subject string   `json:"subject"`
	Rights  []string `json:"rights"`
	Deny    bool     `json:"deny"`
}

func printUsers(e *env, users []userRow) error {
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "USER\tROLE\tGROUPS\tSTATE")
	for _, u := range users {
		state := "active"
		switch {
		case u.Disabled:
			state = "disabled"
		case !u.LockedUntil.IsZero():
			state = "locked until " + u.LockedUntil.Local().Format(time.Kitchen)
		case !u.HasPassword:
			state = "no password"
		}
		if u.ForceServerSecurity {
			state += ", no break-glass"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, roleOrTechnician(u.Role), dash(strings.Join(u.Groups, ",")), state)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// userFields turns the flags of user add/set into the API's body.
func userFields(fs *flag.FlagSet, role *string, disabled, fss *bool, pwStdin *bool, e *env) (map[string]any, error) {
	body := map[string]any{}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["role"] {
		r := *role
		if r == "technician" {
			r = ""
		}
		body["role"] = r
	}
	if given["disabled"] {
		body["disabled"] = *disabled
	}
	if given["force-server-security"] {
		body["force_server_security"] = *fss
	}
	if *pwStdin {
		pw, err := readPassword(e, true)
		if err != nil {
			return nil, err
		}
		body["password"] = pw
	}
	return body, nil
}

func accessCommands() []*command {
	return []*command{
		{
			name: "user add", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "create a user", timeout: defaultTimeout,
			help: `Roles: admin (everything), operator (offices, tokens, policy, artifacts),
read-only (look), technician (no API role: signs in and reaches hosts as
host permissions allow). Passwords are read from standard input. Without
--password-stdin the user has no password and cannot sign in until
outpost user set NAME --password-stdin gives it one.

Examples:
  outpost user add tina --password-stdin < tina.pw
  echo "$PW" | outpost user add olga --role operator --password-stdin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				role := fs.String("role", "technician", "`ROLE`: admin, operator, read-only or technician")
				disabled := fs.Bool("disabled", false, "create the user disabled")
				fss := fs.Bool("force-server-security", false, "forbid host-local break-glass sign-in for this user")
				pw := fs.Bool("password-stdin", false, "read the password from standard input")
				return func(ctx context.Context, e *env, args []string) error {
					body, err := userFields(fs, role, disabled, fss, pw, e)
					if err != nil {
						return err
					}
					body["name"] = args[0]
					if _, ok := body["role"]; !ok {
						body["role"] = ""
					}
					raw, err := e.api.send(ctx, http.MethodPost, "/v1/users", body)
					if err != nil {
						return err
					}
					if e.json {
						err = writeJSON(e.stdout, raw)
					} else {
						var u userRow
						if err := decode(raw, "user", &u); err != nil {
							return err
						}
						err = printUsers(e, []userRow{u})
					}
					if _, ok := body["password"]; err == nil && !ok {
						// On purpose for an account prepared ahead, but
						// easy to miss: it cannot sign in yet.
						_, err = fmt.Fprintf(e.stderr, "note: %s has no password and cannot sign in until one is set: outpost user set %s --password-stdin < FILE\n", args[0], args[0])
					}
					return err
				}
			},
		},
		{
			name: "user set", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "change a user: role, password, disabled, force-server-security, unlock", timeout: defaultTimeout,
			help: `Disabling a user ends its live sessions on every connected host at once;
hosts that missed the push learn it before their next session.

Examples:
  outpost user set tina --disabled
  outpost user set tina --disabled=false --unlock
  echo "$PW" | outpost user set admin --password-stdin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				role := fs.String("role", "", "`ROLE`: admin, operator, read-only or technician")
				disabled := fs.Bool("disabled", false, "disable (or with =false enable) the user")
				fss := fs.Bool("force-server-security", false, "forbid host-local break-glass sign-in for this user")
				pw := fs.Bool("password-stdin", false, "read a new password from standard input")
				unlock := fs.Bool("unlock", false, "lift a lockout after failed sign-ins")
				return func(ctx context.Context, e *env, args []string) error {
					body, err := userFields(fs, role, disabled, fss, pw, e)
					if err != nil {
						return err
					}
					if *unlock {
						body["unlock"] = true
					}
					if len(body) == 0 {
						return usagef("nothing to change: give --role, --disabled, --force-server-security, --password-stdin or --unlock")
					}
					raw, err := e.api.send(ctx, http.MethodPatch, "/v1/users/"+url.PathEscape(args[0]), body)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var u userRow
					if err := decode(raw, "user", &u); err != nil {
						return err
					}
					return printUsers(e, []userRow{u})
				}
			},
		},
		{
			name: "user list", summary: "list users", timeout: defaultTimeout,
			help: `Examples:
  outpost user list
  outpost user list --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/users", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct{ Users []userRow }
					if err := decode(raw, "users", &out); err != nil {
						return err
					}
					return printUsers(e, out.Users)
				}
			},
		},
		{
			name: "user remove", args: "NAME", minArgs: 1, maxArgs: 1, summary: "delete a user (its sessions end)", timeout: defaultTimeout,
			help: `The user is disabled first, so connected hosts end its sessions at once.
Its grants (user:NAME) leave every office's and host's permission list,
so a user made later under the same name starts with none; the answer
says which lists they were in.

Examples:
  outpost user remove tom
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(args[0]), nil)
					if err != nil {
						return err
					}
					return printDeleted(e, raw, "user "+args[0])
				}
			},
		},
		{
			name: "group add", args: "NAME [MEMBER...]", minArgs: 1, maxArgs: -1, summary: "create a group", timeout: defaultTimeout,
			help: `Examples:
  outpost group add berlin-techs tina tom --description "Berlin IT"
`,
			setup: func(fs *flag.FlagSet) runFunc {
				desc := fs.String("description", "", "`TEXT` that says what the group is for")
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodPost, "/v1/groups", map[string]any{"name": args[0], "description": *desc, "members": args[1:]})
					if err != nil {
						return err
					}
					return printGroup(e, raw)
				}
			},
		},
		{
			name: "group members", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "add or remove members; removal takes effect on every host at once", timeout: defaultTimeout,
			help: `Examples:
  outpost group members berlin-techs --add tina --add tom
  outpost group members berlin-techs --remove tom
`,
			setup: func(fs *flag.FlagSet) runFunc {
				var add, remove stringList
				fs.Var(&add, "add", "`USER` to add (repeatable)")
				fs.Var(&remove, "remove", "`USER` to remove (repeatable)")
				return func(ctx context.Context, e *env, args []string) error {
					if len(add)+len(remove) == 0 {
						return usagef("give --add USER or --remove USER")
					}
					// The group before, to say what changed nothing.
					var before groupRow
					if raw, err := e.api.get(ctx, "/v1/groups/"+url.PathEscape(args[0]), nil); err == nil {
						_ = json.Unmarshal(raw, &before)
					}
					raw, err := e.api.send(ctx, http.MethodPatch, "/v1/groups/"+url.PathEscape(args[0]), map[string]any{"add": []string(add), "remove": []string(remove)})
					if err != nil {
						return err
					}
					if !e.json && before.Name != "" {
						for _, u := range remove {
							if !slices.Contains(before.Members, u) {
								fmt.Fprintf(e.stderr, "note: %s was not a member of %s%s\n", u, args[0], didyoumean.Hint(u, before.Members))
							}
						}
						for _, u := range add {
							if slices.Contains(before.Members, u) {
								fmt.Fprintf(e.stderr, "note: %s was a member of %s already\n", u, args[0])
							}
						}
					}
					return printGroup(e, raw)
				}
			},
		},
		{
			name: "group list", summary: "list groups and their members", timeout: defaultTimeout,
			help: `Examples:
  outpost group list
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/groups", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct{ Groups []groupRow }
					if err := decode(raw, "groups", &out); err != nil {
						return err
					}
					tw := newTable(e.stdout)
					fmt.Fprintln(tw, "GROUP\tMEMBERS\tDESCRIPTION")
					for _, g := range out.Groups {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Name, dash(strings.Join(g.Members, ",")), g.Description)
					}
					return tw.Flush()
				}
			},
		},
		{
			name: "group remove", args: "NAME", minArgs: 1, maxArgs: 1, summary: "delete a group", timeout: defaultTimeout,
			help: `Its members' tokens that carried it are revoked on every host. Its grants
(group:NAME) leave every office's and host's permission list, so a group
made later under the same name starts with none; the answer says which
lists they were in.

Examples:
  outpost group remove paris-techs
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(args[0]), nil)
					if err != nil {
						return err
					}
					return printDeleted(e, raw, "group "+args[0])
				}
			},
		},
		permSetCommand(),
		permAddCommand(),
		permRemoveCommand(),
		permShowCommand(),
		{
			name: "audit", summary: "sign-ins, admin changes, connects and commands, newest first", timeout: defaultTimeout,
			help: `Hosts keep their records of connects and commands until the coordinator
acknowledges them, so records of a host that was offline arrive later;
the table is sorted by when things happened, newest first, whatever the
order they arrived in (--output json keeps the coordinator's order).
ALLOWED says whether the user had the right. WHERE names hosts by hostname
(by member id when the host is gone or its hostname is not unique).
SOURCE is the address a coordinator event came from (sign-ins, API
changes); a host's own records of direct sessions say it in DETAIL. How each allowed session
ended is a record of its own (exec.end, shell.end, put.end, get.end): the
exit status or the error, how long it ran and the bytes it moved.
--action exec shows both exec and exec.end; --action user every user.*.

Examples:
  outpost audit --since 1h
  outpost audit --user tina --action exec
`,
			setup: func(fs *flag.FlagSet) runFunc {
				user := fs.String("user", "", "only this `USER`")
				action := fs.String("action", "", "only this `ACTION` and its kinds (login, connect, exec, exec.end, shell, user.update; user: every user.*, ...)")
				host := fs.String("host", "", "only records of this `HOST` (hostname or member id): its own, and the coordinator's about it")
				since := fs.String("since", "", "only newer than a `DURATION` (1h) or an RFC3339 time")
				limit := config.Int(fs, "limit", 100, "at most `N` events")
				return func(ctx context.Context, e *env, args []string) error {
					q := url.Values{}
					for k, v := range map[string]string{"user": *user, "action": *action, "host": *host, "since": *since} {
						if v != "" {
							q.Set(k, v)
						}
					}
					q.Set("limit", fmt.Sprint(*limit))
					raw, err := e.api.get(ctx, "/v1/audit", q)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Events []auditEvent
					}
					if err := decode(raw, "audit", &out); err != nil {
						return err
					}
					if len(out.Events) == 0 && *action != "" {
						kinds := auditKinds()
						if !slices.Contains(kinds, *action) {
							_, err := fmt.Fprintf(e.stderr, "no records: the audit trail has no action %q%s; see outpost help audit\n", *action, didyoumean.Hint(*action, kinds))
							return err
						}
					}
					if len(out.Events) == 0 {
						_, err := fmt.Fprintln(e.stderr, "no records match")
						return err
					}
					return printAudit(ctx, e, out.Events)
				}
			},
		},
	}
}

// auditActions are the actions the audit trail records (docs/api.md).
var auditActions = []string{"login", "refresh", "user.create", "user.update", "user.delete", "group.create", "group.update",
	"group.delete", "permissions.set", "policy.apply", "policy.delete", "agent.labels", "office.create", "office.update",
	"office.delete", "office.policy", "office.gossip_key", "token.create", "token.revoke", "computer.add", "computer.remove",
	"installer.create", "agent.move", "agent.delete", "artifact.upload", "artifact.remove", "backup", "patch.import",
	"patch.approve", "patch.revoke", "patch.remove", "patch_rule.put", "patch_rule.delete", "patch_rule.evaluate", "connect",
	"exec", "shell", "get", "put", "inventory", "sync", "reboot", "revoked"}

// auditKinds are the actions and their kinds (user for user.*), which
// --action takes.
func auditKinds() []string {
	out := slices.Clone(auditActions)
	for _, a := range auditActions {
		if kind, _, ok := strings.Cut(a, "."); ok && !slices.Contains(out, kind) {
			out = append(out, kind)
		}
	}
	for _, a := range []string{"exec", "shell", "get", "put", "inventory", "sync", "reboot"} {
		out = append(out, a+".end") // a host session's end
	}
	return out
}

// auditEvent is a record of GET /v1/audit, as far as the table needs it.
type auditEvent struct {
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Detail  string    `json:"detail"`
	Allowed bool      `json:"allowed"`
	Source  string    `json:"source"`
	Remote  string    `json:"remote"`
}

// auditHost is the member id a record's target names ("host ag-...",
// "agent ag-..."), or "".
func auditHost(target string) (kind, id string) {
	kind, id, ok := strings.Cut(target, " ")
	if !ok || (kind != "host" && kind != "agent") || strings.Contains(id, " ") {
		return "", ""
	}
	return kind, id
}

// printAudit prints events newest first by when they happened: the
// coordinator lists them as they arrived, and a host that was offline
// sends its records late. Hosts are shown by hostname, from one listing of
// the agents, when some record targets one; a host since removed, or a
// hostname that several hosts share, keeps its member id.
func printAudit(ctx context.Context, e *env, events []auditEvent) error {
	sort.SliceStable(events, func(i, j int) bool { return events[i].At.After(events[j].At) })
	var names map[string]string
	for _, ev := range events {
		if _, id := auditHost(ev.Target); id != "" {
			names = hostnames(ctx, e)
			break
		}
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "TIME\tUSER\tACTION\tALLOWED\tWHERE\tSOURCE\tDETAIL")
	for _, ev := range events {
		ok := "yes"
		if !ev.Allowed {
			ok = "DENIED"
		}
		where := ev.Target
		if kind, id := auditHost(where); names[id] != "" {
			where = kind + " " + names[id]
		}
		// The coordinator stores what hosts and technicians sent escaped,
		// but records from before it did are shown as they are: nothing
		// in them may act on the terminal, nor a tab shift the columns.
		esc := safetext.Escape
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.At.Local().Format(time.DateTime), esc(ev.Actor), esc(ev.Action), ok, esc(dash(where)), esc(dash(ev.Remote)), esc(ev.Detail))
	}
	return tw.Flush()
}

// hostnames maps member ids to hostnames, leaving out hostnames that
// several members share. It is only for show: when the agents cannot be
// listed, the ids stay.
func hostnames(ctx context.Context, e *env) map[string]string {
	agents, _, err := searchAgents(ctx, e, nil)
	if err != nil {
		return nil
	}
	count := map[string]int{}
	for _, a := range agents {
		count[strings.ToLower(a.Hostname)]++
	}
	names := map[string]string{}
	for _, a := range agents {
		if a.Hostname != "" && count[strings.ToLower(a.Hostname)] == 1 {
			names[a.ID] = a.Hostname
		}
	}
	return names
}

func printGroup(e *env, raw []byte) error {
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var g groupRow
	if err := decode(raw, "group", &g); err != nil {
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "group %s: %s\n", g.Name, dash(strings.Join(g.Members, ", ")))
	return err
}

func permPath(office, host string) (string, error) {
	switch {
	case office != "" && host != "":
		return "", usagef("give --office or --host, not both")
	case office != "":
		return officePath(office) + "/permissions", nil
	case host != "":
		return "/v1/hosts/" + url.PathEscape(host) + "/permissions", nil
	}
	return "", usagef("give --office NAME or --host ID")
}

func parseGrant(s string) (grantRow, error) {
	g := grantRow{}
	rest, deny := strings.CutPrefix(s, "deny:")
	g.Deny = deny
	subject, rights, ok := strings.Cut(rest, "=")
	if !ok || rights == "" || (!strings.HasPrefix(subject, "user:") && !strings.HasPrefix(subject, "group:")) {
		return g, usagef("grant %q: want [deny:]user:NAME=RIGHTS or [deny:]group:NAME=RIGHTS, like group:berlin-techs=view,command", s)
	}
	g.Subject = subject
	for _, r := range strings.Split(rights, ",") {
		switch r = strings.TrimSpace(r); r {
		case "view", "control", "command", "files", "manage":
			g.Rights = append(g.Rights, r)
		default:
			return g, usagef("grant %q: right %q%s: want view, control, command, files or manage", s, r,
				didyoumean.Hint(r, []string{"view", "control", "command", "files", "manage"}))
		}
	}
	return g, nil
}

func printPerms(e *env, raw []byte) error {
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var p struct {
		Host         string      `json:"host"`
		Office       string      `json:"office"`
		Grants       []grantRow  `json:"grants"`
		OfficeGrants *[]grantRow `json:"office_grants"`
		Revision     uint64      `json:"revision"`
		Warnings     []string    `json:"warnings"`
	}
	if err := decode(raw, "permissions", &p); err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "SCOPE\tSUBJECT\tEFFECT\tRIGHTS")
	scope := "office " + p.Office
	if p.Host != "" {
		scope = "host " + p.Host
	}
	row := func(scope string, g grantRow) {
		eff := "allow"
		if g.Deny {
			eff = "deny"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", scope, g.Subject, eff, strings.Join(g.Rights, ","))
	}
	for _, g := range p.Grants {
		row(scope, g)
	}
	if p.OfficeGrants != nil {
		for _, g := range *p.OfficeGrants {
			row("office "+p.Office, g)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Revision > 0 {
		_, err := fmt.Fprintf(e.stdout, "signed into policy revision %d of office %s; connected hosts are told now\n", p.Revision, p.Office)
		return err
	}
	return nil
}
