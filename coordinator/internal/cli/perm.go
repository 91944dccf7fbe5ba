package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/outposthq/outpost/pkg/didyoumean"
)

// permRulesHelp is what every perm command's help says about how the
// lists combine, since restricting one host is not what it seems.
const permRulesHelp = `A GRANT is [deny:]user:NAME=RIGHTS or [deny:]group:NAME=RIGHTS, RIGHTS a
comma list of view (inventory), control (outpost sync, reboot), command
(exec, connect), files (cp) and manage (this list itself: whoever has
manage on an office changes its list and its hosts' without being an
admin).

A host's list adds to its office's list: a host allows what either list
allows, so a host list can give more but never less than the office's.
To keep someone off one host, put a deny in that host's list: a deny
wins over every allow, whichever list it is in. Hosts receive both lists
inside the office's signed policy.
`

// permEditTries bounds perm add and perm remove when other admins keep
// changing the same list: each try reads it afresh.
const permEditTries = 5

func permSetCommand() *command {
	return &command{
		name: "perm set", args: "GRANT...", minArgs: 0, maxArgs: -1,
		summary: "replace the permission list of an office or a host (a host's list adds to its office's)", timeout: defaultTimeout,
		help: permRulesHelp + `
perm set replaces the whole list with the grants given; perm add and perm
remove change only the grants they name. Clearing a list takes --none.

Examples:
  outpost perm set --office berlin group:berlin-techs=view,command,files
  outpost perm set --host ag-0123 group:berlin-techs=view deny:user:tom=command
  outpost perm set --office berlin --none
`,
		setup: func(fs *flag.FlagSet) runFunc {
			office := fs.String("office", "", "`NAME` of the office whose hosts the list covers")
			host := fs.String("host", "", "member `ID` or hostname of one host")
			none := fs.Bool("none", false, "remove every grant of the list")
			return func(ctx context.Context, e *env, args []string) error {
				path, err := permPath(*office, *host)
				if err != nil {
					return err
				}
				switch {
				case *none && len(args) > 0:
					return usagef("--none clears the list: give it without grants, or give the grants without it")
				case !*none && len(args) == 0:
					return usagef("this would remove every grant of %s; pass --none to mean it", permScope(*office, *host))
				}
				grants := []grantRow{}
				for _, a := range args {
					g, err := parseGrant(a)
					if err != nil {
						return err
					}
					grants = append(grants, g)
				}
				// The list before, to say what the replacement took away.
				var before struct {
					Grants []grantRow `json:"grants"`
				}
				if raw, err := e.api.get(ctx, path, nil); err == nil {
					_ = json.Unmarshal(raw, &before)
				}
				raw, err := e.api.send(ctx, http.MethodPut, path, map[string]any{"grants": grants})
				if err != nil {
					return err
				}
				if !e.json {
					var after struct {
						Warnings []string `json:"warnings"`
					}
					_ = json.Unmarshal(raw, &after)
					tellReplaced(e, before.Grants, grants, after.Warnings)
				}
				return printPerms(e, raw)
			}
		},
	}
}

func permAddCommand() *command {
	return &command{
		name: "perm add", args: "GRANT...", minArgs: 1, maxArgs: -1,
		summary: "add grants or rights to an office's or a host's list, keeping the rest", timeout: defaultTimeout,
		help: permRulesHelp + `
A grant whose subject the list has already (an allow, or with deny: a
deny) gains the rights it lacks; any other is added. Nothing else in the
list changes, and a change another admin made meanwhile is kept: the list
is read, changed and written back only if it is still the one read, else
read again.

Examples:
  outpost perm add --office berlin group:berlin-techs=view,command
  outpost perm add --host pc-7 deny:user:tom=command,files
`,
		setup: permEditSetup(parseGrant, func(_ string, grants, add []grantRow) ([]grantRow, error) {
			return addGrants(grants, add), nil
		}),
	}
}

func permRemoveCommand() *command {
	return &command{
		name: "perm remove", args: "[deny:]SUBJECT[=RIGHTS]...", minArgs: 1, maxArgs: -1,
		summary: "take grants or rights out of an office's or a host's list, keeping the rest", timeout: defaultTimeout,
		help: permRulesHelp + `
user:NAME or group:NAME takes the subject's allow grants out of the list,
deny:user:NAME its deny grants (taking a deny away gives rights back, so
it is never done unasked); with =RIGHTS only those rights go, and a grant
left with none goes. Naming what the list does not have is an error, and
nothing is changed. As for perm add, a change another admin made
meanwhile is kept.

Examples:
  outpost perm remove --office berlin group:paris-techs
  outpost perm remove --office berlin group:berlin-techs=files
  outpost perm remove --host pc-7 deny:user:tom
`,
		setup: permEditSetup(parseSubjectRights, removeGrants),
	}
}

func permShowCommand() *command {
	return &command{
		name: "perm show", summary: "show the permission list of an office or a host, or every grant naming a user", timeout: defaultTimeout,
		help: `A host's list shows with its office's, which it adds to. --user lists every
grant of every office's and host's list that allows or denies the user
anything, by its name or one of its groups.

` + permRulesHelp + `
Examples:
  outpost perm show --office berlin
  outpost perm show --host ag-0123
  outpost perm show --user tina
`,
		setup: func(fs *flag.FlagSet) runFunc {
			office := fs.String("office", "", "`NAME` of an office")
			host := fs.String("host", "", "member `ID` or hostname of one host")
			user := fs.String("user", "", "`NAME` of a user: every grant that names it or one of its groups")
			return func(ctx context.Context, e *env, args []string) error {
				if *user != "" {
					if *office != "" || *host != "" {
						return usagef("give one of --office, --host and --user")
					}
					raw, err := e.api.get(ctx, "/v1/users/"+url.PathEscape(*user)+"/permissions", nil)
					if err != nil {
						return err
					}
					return printUserPerms(e, raw)
				}
				if *office == "" && *host == "" {
					return usagef("give --office NAME, --host ID or --user NAME")
				}
				path, err := permPath(*office, *host)
				if err != nil {
					return err
				}
				raw, err := e.api.get(ctx, path, nil)
				if err != nil {
					return err
				}
				return printPerms(e, raw)
			}
		},
	}
}

// permScope names the list the flags choose, as the messages say it.
func permScope(office, host string) string {
	if host != "" {
		return "host " + host
	}
	return "office " + office
}

// permList is the API's answer about one list, as perm add and remove
// need it.
type permList struct {
	Host   string     `json:"host"`
	Office string     `json:"office"`
	Grants []grantRow `json:"grants"`
	ETag   string     `json:"etag"`
}

// editPerms changes the list at path with edit: it reads the list, edits
// it and writes it back on condition that it is still the list read
// (If-Match); when another admin changed it meanwhile (409), it starts
// over with the list as it is now, up to permEditTries times.
func editPerms(ctx context.Context, e *env, path string, edit func(scope string, grants []grantRow) ([]grantRow, error)) error {
	for try := 1; ; try++ {
		raw, err := e.api.get(ctx, path, nil)
		if err != nil {
			return err
		}
		var cur permList
		if err := decode(raw, "permissions", &cur); err != nil {
			return err
		}
		scope := "office " + cur.Office
		if cur.Host != "" {
			scope = "host " + cur.Host
		}
		if cur.ETag == "" {
			return fmt.Errorf("the coordinator at %s gives no etag for the permission list of %s, so a change could undo another admin's: upgrade it, or give the whole list with outpost perm set", e.api.server, scope)
		}
		next, err := edit(scope, slices.Clone(cur.Grants))
		if err != nil {
			return err
		}
		if slices.EqualFunc(cur.Grants, next, sameGrant) {
			fmt.Fprintf(e.stderr, "nothing to change: the permission list of %s has these grants already\n", scope)
			return printPerms(e, raw)
		}
		if next == nil {
			next = []grantRow{}
		}
		raw, err = e.api.sendIfMatch(ctx, http.MethodPut, path, cur.ETag, map[string]any{"grants": next})
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusConflict {
			if try < permEditTries {
				continue
			}
			return fmt.Errorf("the permission list of %s changed under every one of %d tries, other admins are changing it too: try again (%v)", scope, permEditTries, err)
		}
		if err != nil {
			return err
		}
		return printPerms(e, raw)
	}
}

// sendIfMatch is send with an If-Match header: the coordinator makes the
// change only if what it changes still has that entity tag.
func (c *client) sendIfMatch(ctx context.Context, method, path, etag string, v any) ([]byte, error) {
	body, err := jsonBody(v)
	if err != nil {
		return nil, err
	}
	req, err := c.newRequest(ctx, method, path, nil, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", `"`+etag+`"`)
	return c.do(req)
}

func jsonBody(v any) (*bytes.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return bytes.NewReader(b), nil
}

func sameGrant(a, b grantRow) bool {
	return a.Subject == b.Subject && a.Deny == b.Deny && slices.Equal(a.Rights, b.Rights)
}

// addGrants merges add into grants: a grant of the same subject and kind
// (allow or deny) gains the rights it lacks, any other is appended.
func addGrants(grants, add []grantRow) []grantRow {
	for _, a := range add {
		i := slices.IndexFunc(grants, func(g grantRow) bool { return g.Subject == a.Subject && g.Deny == a.Deny })
		if i < 0 {
			grants = append(grants, grantRow{Subject: a.Subject, Deny: a.Deny, Rights: slices.Clone(a.Rights)})
			continue
		}
		g := grants[i]
		g.Rights = slices.Clone(g.Rights)
		for _, r := range a.Rights {
			if !slices.Contains(g.Rights, r) {
				g.Rights = append(g.Rights, r)
			}
		}
		grants[i] = g
	}
	return grants
}

// removeGrants takes specs out of grants: each spec's subject's grants of
// its kind, or only the rights it names. A spec that matches nothing is
// an error, so that a typo changes nothing.
func removeGrants(scope string, grants, specs []grantRow) ([]grantRow, error) {
	for _, s := range specs {
		removed := false
		var kept []grantRow
		for _, g := range grants {
			if g.Subject != s.Subject || g.Deny != s.Deny {
				kept = append(kept, g)
				continue
			}
			if len(s.Rights) == 0 {
				removed = true
				continue
			}
			var left []string
			for _, r := range g.Rights {
				if slices.Contains(s.Rights, r) {
					removed = true
				} else {
					left = append(left, r)
				}
			}
			if len(left) > 0 {
				g.Rights = left
				kept = append(kept, g)
			}
		}
		if !removed {
			return nil, noSuchGrant(scope, grants, s)
		}
		grants = kept
	}
	return grants, nil
}

func noSuchGrant(scope string, grants []grantRow, s grantRow) error {
	kind, other, otherSpec := "allow", "a deny", "deny:"+s.Subject
	if s.Deny {
		kind, other, otherSpec = "deny", "an allow", s.Subject
	}
	what := fmt.Sprintf("no %s grant for %s", kind, s.Subject)
	if len(s.Rights) > 0 {
		what = fmt.Sprintf("no %s grant of %s for %s", kind, strings.Join(s.Rights, " or "), s.Subject)
	}
	msg := fmt.Sprintf("nothing changed: the permission list of %s has %s", scope, what)
	if slices.ContainsFunc(grants, func(g grantRow) bool { return g.Subject == s.Subject && g.Deny != s.Deny }) {
		msg += fmt.Sprintf(" (it has %s grant for it: name it as %s)", other, otherSpec)
	}
	return errors.New(msg + "; see outpost perm show")
}

// parseSubjectRights reads [deny:]SUBJECT[=RIGHTS], what perm remove names.
func parseSubjectRights(s string) (grantRow, error) {
	if strings.Contains(s, "=") {
		return parseGrant(s)
	}
	rest, deny := strings.CutPrefix(s, "deny:")
	kind, name, _ := strings.Cut(rest, ":")
	if (kind != "user" && kind != "group") || name == "" {
		return grantRow{}, usagef("%q: want [deny:]user:NAME or [deny:]group:NAME, with =RIGHTS to take only those rights", s)
	}
	return grantRow{Subject: rest, Deny: deny}, nil
}

// printUserPerms prints GET /v1/users/{name}/permissions.
func printUserPerms(e *env, raw []byte) error {
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var p struct {
		User        string   `json:"user"`
		Groups      []string `json:"groups"`
		Permissions []struct {
			Scope   string   `json:"scope"`
			Subject string   `json:"subject"`
			Rights  []string `json:"rights"`
			Deny    bool     `json:"deny"`
		} `json:"permissions"`
	}
	if err := decode(raw, "user's permissions", &p); err != nil {
		return err
	}
	if len(p.Permissions) == 0 {
		via := "a member of no group"
		if len(p.Groups) > 0 {
			via = "nor its groups " + strings.Join(p.Groups, ", ")
		}
		_, err := fmt.Fprintf(e.stdout, "no office's or host's permission list names user %s (%s)\n", p.User, via)
		return err
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "SCOPE\tSUBJECT\tEFFECT\tRIGHTS")
	for _, g := range p.Permissions {
		eff := "allow"
		if g.Deny {
			eff = "deny"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Scope, g.Subject, eff, strings.Join(g.Rights, ","))
	}
	return tw.Flush()
}

// printDeleted prints the answer to deleting a user or a group: which
// permission lists lost its grants.
func printDeleted(e *env, raw []byte, what string) error {
	if e.json && len(raw) > 0 {
		return writeJSON(e.stdout, raw)
	}
	var out struct {
		RemovedFrom []struct {
			Scope string `json:"scope"`
		} `json:"removed_from"`
	}
	if len(raw) > 0 { // a coordinator before grants went with the user answers 204
		if err := decode(raw, "answer", &out); err != nil {
			return err
		}
	}
	msg := what + " removed"
	if len(out.RemovedFrom) > 0 {
		var names []string
		for _, l := range out.RemovedFrom {
			names = append(names, l.Scope)
		}
		msg += "; removed from the permissions of " + andList(names)
	}
	_, err := fmt.Fprintln(e.stdout, msg)
	return err
}

// andList joins "a", "b" and "c" as "a, b and c".
func andList(xs []string) string {
	if len(xs) <= 1 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// permEditSetup is the setup of perm add and perm remove: --office or
// --host names the list, each argument is parsed into a grant, and change
// makes the list's new grants from its current ones (editPerms writes them
// back only if nobody changed the list meanwhile).
func permEditSetup(parse func(string) (grantRow, error), change func(scope string, grants, args []grantRow) ([]grantRow, error)) func(*flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		office := fs.String("office", "", "`NAME` of the office whose hosts the list covers")
		host := fs.String("host", "", "member `ID` or hostname of one host")
		return func(ctx context.Context, e *env, args []string) error {
			path, err := permPath(*office, *host)
			if err != nil {
				return err
			}
			var given []grantRow
			for _, a := range args {
				g, err := parse(a)
				if err != nil {
					return err
				}
				given = append(given, g)
			}
			return editPerms(ctx, e, path, func(scope string, grants []grantRow) ([]grantRow, error) {
				return change(scope, grants, given)
			})
		}
	}
}

// tellReplaced says, on standard error, which grants of the list perm set
// replaced are gone or lost rights, and points out a new subject that the
// coordinator does not know (warnings) and that is a near miss of one whose
// grants went (a typo of a group's name replaces the group's access by a
// grant to nobody).
func tellReplaced(e *env, before, after []grantRow, warnings []string) {
	key := func(g grantRow) string { return fmt.Sprintf("%v %s", g.Deny, g.Subject) }
	now := map[string]grantRow{}
	for _, g := range after {
		now[key(g)] = g
	}
	var goneSubjects []string
	for _, g := range before {
		n, kept := now[key(g)]
		var lost []string
		for _, r := range g.Rights {
			if !kept || !slices.Contains(n.Rights, r) {
				lost = append(lost, r)
			}
		}
		if len(lost) == 0 {
			continue
		}
		what := g.Subject
		if g.Deny {
			what = "deny:" + what
		}
		if !kept {
			goneSubjects = append(goneSubjects, g.Subject)
			fmt.Fprintf(e.stderr, "removed: %s=%s\n", what, strings.Join(g.Rights, ","))
		} else {
			fmt.Fprintf(e.stderr, "%s no longer has: %s\n", what, strings.Join(lost, ","))
		}
	}
	for _, g := range after {
		// Only a subject the coordinator does not know is a typo.
		kind, name, _ := strings.Cut(g.Subject, ":")
		unknown := slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, "there is no "+kind+" "+name+" yet") })
		if w, ok := didyoumean.Closest(g.Subject, goneSubjects); ok && unknown && w != g.Subject {
			fmt.Fprintf(e.stderr, "warning: %s was granted and %s removed: did you mean %s? (perm add changes only the grants it names)\n", g.Subject, w, w)
		}
	}
}
