package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/safetext"
)

func agentCommands() []*command {
	return []*command{
		{
			name: "agent list", maxArgs: 0,
			summary: "list enrolled agents and relays with their compliance",
			timeout: defaultTimeout,
			help: `COMPLIANT is yes when the agent applied the office's current revision and
every item is compliant or not applicable; pending while it has not applied
the current revision or reported on it yet; no otherwise ('agent show' says
why).

Examples:
  outpost agent list
  outpost agent list --office berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "list only the agents of the office `NAME`")
				return func(ctx context.Context, e *env, args []string) error {
					return listAgents(ctx, e, *officeName, agentQuery(*officeName, "", ""))
				}
			},
		},
		{
			name: "agent show", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "show an agent and the compliance of each policy item",
			timeout: defaultTimeout,
			help: `ID is the agent's id (ag- and 16 hex digits, or its start from 4 hex digits on,
when no other id starts so) or its hostname, as agent list and agent search
show them.

Examples:
  outpost agent show ag-3f9c2a0011223344
  outpost agent show pc-17
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					return showAgent(ctx, e, args[0])
				}
			},
		},
		{
			name: "agent search", args: "[TEXT]", maxArgs: 1,
			summary: "find agents by name, office and state",
			timeout: defaultTimeout,
			help: `TEXT is a part of the hostname or the id, in any case. --state is one of
online (connected now), offline, roaming (outside every office's address
ranges), compliant, noncompliant or reboot (a change waits for the host to
reboot: outpost reboot HOST). The coordinator does the filtering.

--not-seen finds computers that have not checked in for that long (and are
not connected), such as ones retired without being removed; remove them with
outpost agent rm.

--version and --not-version follow an upgrade of the agents: who runs a
version, who does not yet. --state upgrade-refused finds agents that found a
new version in place of their executable and refused it (agent show says
why); they run on as the version they are. --state hung finds agents that
restarted themselves in the last week because they made no progress (agent
show says when and what was stuck).

Examples:
  outpost agent search pc-1
  outpost agent search --office berlin --state offline
  outpost agent search --state roaming --output json
  outpost agent search --not-seen 30d
  outpost agent search --office berlin --not-version 1.6.0
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "only agents in the office `NAME`")
				state := fs.String("state", "", "only agents in `STATE`: online, offline, roaming, compliant, noncompliant, reboot, upgrade-refused or hung")
				notSeen := newTTLFlag(fs, "not-seen", 0, "only agents not heard of for a `DURATION` such as 30d or 72h")
				version := fs.String("version", "", "only agents running `VERSION`")
				notVersion := fs.String("not-version", "", "only agents running another version than `VERSION`")
				return func(ctx context.Context, e *env, args []string) error {
					switch *state {
					case "", "online", "offline", "roaming", "compliant", "noncompliant", "reboot", "upgrade-refused", "hung":
					default:
						return usagef("--state %q: want online, offline, roaming, compliant, noncompliant, reboot, upgrade-refused or hung", *state)
					}
					if *notSeen < 0 {
						return usagef("--not-seen %s: want a positive duration such as 30d", *notSeen)
					}
					text := ""
					if len(args) > 0 {
						text = args[0]
					}
					if text == "" && *officeName == "" && *state == "" && *notSeen == 0 && *version == "" && *notVersion == "" {
						return usagef("nothing to search for: give TEXT, --office, --state, --not-seen, --version or --not-version (or use agent list)")
					}
					q := agentQuery(*officeName, text, *state)
					if *notSeen > 0 {
						q.Set("not_seen", shortDuration(*notSeen))
					}
					if *version != "" {
						q.Set("version", *version)
					}
					if *notVersion != "" {
						q.Set("not_version", *notVersion)
					}
					return listAgents(ctx, e, *officeName, q)
				}
			},
		},
		{
			name: "agent move", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "put an agent in an office by hand; it becomes the agent's home office",
			timeout: defaultTimeout,
			help: `The home office's policy applies wherever no office's address range matches the
agent; inside another office's range, that office's placement still wins at
the agent's next check-in. Connected agents hear of the move at once.

ID is the agent's id (ag- and 16 hex digits, or its start from 4 hex digits on,
when no other id starts so) or its hostname, as agent list and agent search
show them.

Examples:
  outpost agent move ag-3f9c2a0011223344 --office hamburg
  outpost agent move pc-17 --office hamburg
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office to move the agent to (required)")
				return func(ctx context.Context, e *env, args []string) error {
					if *officeName == "" {
						return usagef("missing --office NAME")
					}
					raw, err := e.api.send(ctx, http.MethodPost, agentPath(args[0])+"/move", map[string]string{"office": *officeName})
					if err != nil {
						return agentNotFound(ctx, e, args[0], err)
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var a agent
					if err := decode(raw, "agent", &a); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "agent %s (%s) moved: home office %s, now in %s\n", a.ID, safetext.Escape(a.Hostname), a.Home, officeColumn(a))
					return err
				}
			},
		},
		{
			name: "agent rm", args: "ID", minArgs: 1, maxArgs: 1,
			summary: "remove an agent or relay: its certificate opens no connection any more",
			timeout: defaultTimeout,
			help: `The member's live connection is closed, its runs and its host permission list
are removed, and its office's gossip key is replaced (outpost office
rotate-key), so that it is cut off from its office too. To bring the computer
back, enrol it again with a new token.

ID is the member's id (ag- or rl- and 16 hex digits, or its start from 4 hex
digits on, when no other id starts so) or its hostname, as agent list and
agent search show them; it is looked up first, and the member found is the
one removed.

Examples:
  outpost agent rm ag-3f9c2a0011223344
  outpost agent rm pc-17
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, agentPath(args[0]), nil)
					if err != nil {
						return agentNotFound(ctx, e, args[0], err)
					}
					var a agent
					if err := decode(raw, "agent", &a); err != nil {
						return err
					}
					if _, err := e.api.send(ctx, http.MethodDelete, agentPath(a.ID), nil); err != nil {
						return err
					}
					if e.json {
						return nil
					}
					_, err = fmt.Fprintf(e.stdout, "%s %s (%s) removed; office %s's gossip key is being replaced\n", orDash(a.Role), a.ID, safetext.Escape(a.Hostname), a.Office)
					return err
				}
			},
		},
		{
			name: "agent wait", maxArgs: 0,
			summary: "wait until enough agents of an office comply with its current revision",
			timeout: 3 * time.Minute,
			help: `Polls the office and its agents until at least --count agents (relays do not
count) report compliant at the office's current policy revision. Prints a
line whenever the count changes. On timeout it exits 1 and says which agents
are not there yet and why. --timeout defaults to 3m here.

Examples:
  outpost agent wait --office berlin --count 3
  outpost agent wait --office berlin --count 50 --timeout 15m --poll 10s
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office to watch (required)")
				count := config.Int(fs, "count", 0, "`N` agents that must be compliant (required)")
				poll := newTTLFlag(fs, "poll", 2*time.Second, "how often to ask the coordinator, a `DURATION`")
				return func(ctx context.Context, e *env, args []string) error {
					switch {
					case *officeName == "":
						return usagef("missing --office NAME")
					case *count < 1:
						return usagef("missing --count N: how many agents must be compliant, 1 or more")
					case *poll <= 0:
						return usagef("--poll %s: want a positive duration such as 2s", *poll)
					}
					return waitAgents(ctx, e, *officeName, *count, *poll)
				}
			},
		},
	}
}

// officeColumn is where an agent is, marking one outside every office's
// ranges: "berlin (roaming)" is an agent of berlin out on the internet.
func officeColumn(a agent) string {
	if a.Roaming {
		return a.Office + " (roaming)"
	}
	return a.Office
}

// compliance is the COMPLIANT column: yes, pending or no.
func compliance(a agent, officeRevision int64) string {
	switch {
	case a.Role == "relay":
		return "- (relay)"
	case a.Compliant:
		return "yes"
	case a.Revision < officeRevision, len(a.Items) == 0:
		return "pending"
	}
	return "no"
}

// itemOK says whether an item's status does not stand in compliance's way.
func itemOK(status string) bool {
	s := strings.NewReplacer("_", " ", "-", " ").Replace(strings.ToLower(status))
	return s == "compliant" || s == "not applicable"
}

func agentPath(id string) string { return "/v1/agents/" + url.PathEscape(id) }

// agentNotFound adds to the coordinator's "not found" for an agent what an
// id looks like and how to find it: the coordinator took what was typed as
// an id, the start of one and a hostname, so the agents whose hostname or id
// merely contains it are named.
func agentNotFound(ctx context.Context, e *env, id string, err error) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusNotFound || !strings.Contains(ae.message, id) {
		return err // not about the agent: an unknown office, say
	}
	const shown = 5
	// Said once, below, with more to it.
	err = &apiError{status: ae.status, message: strings.TrimSuffix(ae.message, ": see outpost agent list")}
	agents, _, serr := searchAgents(ctx, e, agentQuery("", id, ""))
	if serr != nil || len(agents) == 0 {
		return fmt.Errorf("%w; name an agent by its id, ag- (rl- for a relay) and 16 hex digits or their start, or by its hostname: outpost agent list or outpost agent search TEXT finds it", err)
	}
	var found []string
	for _, a := range agents[:min(len(agents), shown)] {
		found = append(found, a.ID+" ("+a.Hostname+")")
	}
	if len(agents) > shown {
		found = append(found, fmt.Sprintf("and %d more (outpost agent search %s)", len(agents)-shown, id))
	}
	return fmt.Errorf("%w; %q is part of %s", err, id, strings.Join(found, ", "))
}

func getOffice(ctx context.Context, e *env, name string) (office, error) {
	var o office
	raw, err := e.api.get(ctx, officePath(name), nil)
	if err != nil {
		return o, err
	}
	return o, decode(raw, "office", &o)
}

// agentQuery is the search of GET /v1/agents; empty values are left out.
func agentQuery(officeName, text, state string) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"office": officeName, "q": text, "state": state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func getAgents(ctx context.Context, e *env, officeName string) ([]agent, []byte, error) {
	return searchAgents(ctx, e, agentQuery(officeName, "", ""))
}

func searchAgents(ctx context.Context, e *env, q url.Values) ([]agent, []byte, error) {
	raw, err := e.api.get(ctx, "/v1/agents", q)
	if err != nil {
		return nil, nil, err
	}
	var list struct {
		Agents []agent `json:"agents"`
	}
	return list.Agents, raw, decode(raw, "agent list", &list)
}

// listAgents prints the agents that q selects, of the office officeName
// when it is not empty.
func listAgents(ctx context.Context, e *env, officeName string, q url.Values) error {
	if e.json {
		_, raw, err := searchAgents(ctx, e, q)
		if err != nil {
			return err
		}
		return writeJSON(e.stdout, raw)
	}
	// The office's current revision tells pending from not compliant.
	revisions := map[string]int64{}
	if officeName != "" {
		o, err := getOffice(ctx, e, officeName)
		if err != nil {
			return err
		}
		revisions[o.Name] = o.Revision
	} else {
		raw, err := e.api.get(ctx, "/v1/offices", nil)
		if err != nil {
			return err
		}
		var list struct {
			Offices []office `json:"offices"`
		}
		if err := decode(raw, "office list", &list); err != nil {
			return err
		}
		for _, o := range list.Offices {
			revisions[o.Name] = o.Revision
		}
	}
	agents, _, err := searchAgents(ctx, e, q)
	if err != nil {
		return err
	}
	if len(agents) == 0 {
		where := ""
		if officeName != "" {
			where = " in office " + officeName
		}
		if q.Has("q") || q.Has("state") || q.Has("not_seen") || q.Has("version") || q.Has("not_version") {
			_, err := fmt.Fprintf(e.stderr, "no agents%s match\n", where)
			return err
		}
		_, err := fmt.Fprintf(e.stderr, "no agents enrolled%s yet; enroll one with a token from: outpost token create --office NAME\n", where)
		return err
	}
	rows := make([][]string, 0, len(agents))
	for _, a := range agents {
		rows = append(rows, []string{a.ID, a.Hostname, officeColumn(a), orDash(a.Address), ago(e.now(), a.LastSeen.Time),
			strconv.FormatInt(a.Revision, 10), compliance(a, revisions[a.Office])})
	}
	return writeTable(e.stdout, []string{"ID", "HOSTNAME", "OFFICE", "ADDRESS", "LAST SEEN", "REVISION", "COMPLIANT"}, rows)
}

func showAgent(ctx context.Context, e *env, id string) error {
	raw, err := e.api.get(ctx, agentPath(id), nil)
	if err != nil {
		return agentNotFound(ctx, e, id, err)
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var a agent
	if err := decode(raw, "agent", &a); err != nil {
		return err
	}
	o, err := getOffice(ctx, e, a.Office)
	if err != nil {
		return fmt.Errorf("office %s of agent %s: %w", a.Office, a.ID, err)
	}
	now := e.now()
	address := orDash(a.Address)
	var others []string
	for _, addr := range a.Addresses {
		if addr != a.Address {
			others = append(others, addr)
		}
	}
	if len(others) > 0 {
		address += " (also " + strings.Join(others, ", ") + ")"
	}
	revision := strconv.FormatInt(a.Revision, 10)
	if a.Revision != o.Revision {
		revision += fmt.Sprintf(" (office is at %d)", o.Revision)
	}
	fields := [][2]string{
		{"id", a.ID},
		{"hostname", a.Hostname},
		{"office", officeColumn(a)},
	}
	if a.Home != "" && a.Home != a.Office {
		// Placed in another office by its address; home still decides
		// where it goes when it leaves every office's ranges.
		fields = append(fields, [2]string{"home office", a.Home})
	}
	fields = append(fields, [][2]string{
		{"role", orDash(a.Role)},
		{"address", address},
		{"connected", yesNo(a.Connected)},
		{"last seen", timeAndAge(now, a.LastSeen.Time)},
		{"revision", revision},
		{"compliant", compliance(a, o.Revision)},
		{"enrolled", timeAndAge(now, a.Enrolled.Time)},
		{"version", orDash(a.Version)},
	}...)
	if a.UpgradeProblem != "" {
		fields = append(fields, [2]string{"upgrade", a.UpgradeProblem})
	}
	if a.LastHang != "" {
		fields = append(fields, [2]string{"hang", a.LastHang})
	}
	if len(a.Labels) > 0 {
		fields = append(fields, [2]string{"labels", labelsText(a.Labels)})
	}
	if r := a.Reboot; r != nil {
		fields = append(fields, [2]string{"reboot", fmt.Sprintf("needed by %s, since %s", strings.Join(r.Items, ", "), timeAndAge(now, r.Since.Time))})
	}
	if err := writeFields(e.stdout, fields); err != nil {
		return err
	}
	if len(a.Items) == 0 {
		_, err := fmt.Fprintln(e.stdout, "\nno item reports yet")
		return err
	}
	fmt.Fprintln(e.stdout)
	rows := make([][]string, 0, len(a.Items))
	for _, it := range a.Items {
		rows = append(rows, []string{it.ID, it.Kind, orDash(it.Status), ago(now, it.At.Time), it.Message})
	}
	return writeTable(e.stdout, []string{"ITEM", "KIND", "STATUS", "AT", "MESSAGE"}, rows)
}

// rollout is one look at an office during agent wait.
type rollout struct {
	office    string
	revision  int64
	agents    []agent // without relays
	compliant int
	raw       []byte // the agents' JSON, for --output json
}

func (r *rollout) summary(count int) string {
	return fmt.Sprintf("office %s revision %d: %d of %d agents compliant (%d enrolled)", r.office, r.revision, r.compliant, count, len(r.agents))
}

func lookAtRollout(ctx context.Context, e *env, officeName string) (*rollout, error) {
	o, err := getOffice(ctx, e, officeName)
	if err != nil {
		return nil, err
	}
	agents, raw, err := getAgents(ctx, e, officeName)
	if err != nil {
		return nil, err
	}
	r := &rollout{office: officeName, revision: o.Revision, raw: raw}
	for _, a := range agents {
		if a.Role == "relay" {
			continue
		}
		r.agents = append(r.agents, a)
		if a.Compliant && a.Revision == o.Revision {
			r.compliant++
		}
	}
	return r, nil
}

// waitAgents polls until count agents of the office comply with its current
// revision, or ctx ends. Failures that asking again may cure (the coordinator
// restarting) are reported and retried; refusals end the wait.
func waitAgents(ctx context.Context, e *env, officeName string, count int, poll time.Duration) error {
	progressOut := e.stdout
	if e.json {
		progressOut = e.stderr
	}
	var (
		last     *rollout
		lastErr  error
		lastLine string
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return waitFailed(ctx, e, last, lastErr, count)
		case <-timer.C:
		}
		r, err := lookAtRollout(ctx, e, officeName)
		switch {
		case err != nil && ctx.Err() != nil:
			return waitFailed(ctx, e, last, lastErr, count)
		case err != nil && !retryable(err):
			return err
		case err != nil:
			if lastErr == nil || lastErr.Error() != err.Error() {
				fmt.Fprintf(e.stderr, "%v; trying again every %s\n", err, shortDuration(poll))
			}
			lastErr = err
		default:
			last, lastErr = r, nil
			if line := r.summary(count); line != lastLine {
				fmt.Fprintln(progressOut, line)
				lastLine = line
			}
			if r.compliant >= count {
				if e.json {
					return writeJSON(e.stdout, r.raw)
				}
				return nil
			}
		}
		timer.Reset(poll)
	}
}

// waitFailed explains an agent wait that ran out of time: which agents are
// not there yet, and why as far as their reports tell.
func waitFailed(ctx context.Context, e *env, last *rollout, lastErr error, count int) error {
	var te *timeoutError
	if !errors.As(context.Cause(ctx), &te) {
		return errInterrupted
	}
	var b strings.Builder
	b.WriteString(te.Error())
	if last == nil {
		if lastErr != nil {
			fmt.Fprintf(&b, " before the coordinator answered: %v", lastErr)
		}
		return errors.New(b.String())
	}
	fmt.Fprintf(&b, ": %d of %d agents compliant at revision %d in office %s", last.compliant, count, last.revision, last.office)
	writeNotThere(&b, e.now(), last)
	if missing := count - len(last.agents); missing > 0 {
		fmt.Fprintf(&b, "\n  %s not enrolled yet (%d of %d enrolled)", plural(missing, "agent"), len(last.agents), count)
	}
	if lastErr != nil {
		fmt.Fprintf(&b, "\n  the last poll failed: %v", lastErr)
	}
	return errors.New(b.String())
}

func writeNotThere(w io.Writer, now time.Time, r *rollout) {
	first := true
	for _, a := range r.agents {
		if a.Compliant && a.Revision == r.revision {
			continue
		}
		if first {
			fmt.Fprint(w, "; not there yet:")
			first = false
		}
		fmt.Fprintf(w, "\n  %s (%s): %s", safetext.Escape(a.Hostname), a.ID, safetext.Escape(whyNot(a, r.revision, now)))
	}
}

// whyNot says why an agent does not count as compliant at revision.
func whyNot(a agent, revision int64, now time.Time) string {
	var parts []string
	switch {
	case a.Revision < revision:
		parts = append(parts, fmt.Sprintf("at revision %d, the office is at %d", a.Revision, revision))
	case a.Revision > revision:
		parts = append(parts, fmt.Sprintf("at revision %d, newer than the office's %d", a.Revision, revision))
	default:
		for _, it := range a.Items {
			if itemOK(it.Status) {
				continue
			}
			s := it.ID + " " + orDash(it.Status)
			if it.Message != "" {
				s += ": " + it.Message
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			parts = append(parts, "no compliance report yet")
		}
	}
	if !a.Connected {
		parts = append(parts, "offline, last seen "+ago(now, a.LastSeen.Time))
	}
	return strings.Join(parts, "; ")
}
