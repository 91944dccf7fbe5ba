package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func officePath(name string) string { return "/v1/offices/" + url.PathEscape(name) }

// officeFlags are the settable fields of an office, shared by add and edit.
type officeFlags struct {
	description string
	location    string
	mode        string
	relays      stringList
	interval    time.Duration
	timeZone    string
	subnets     stringList
	egress      stringList
	plainHTTP   bool
	distServer  string
}

func (o *officeFlags) register(fs *flag.FlagSet, edit bool) {
	relayHelp := "a relay's content `URL`, like https://10.1.0.5:8090; repeat for several"
	if edit {
		relayHelp += "; the given list replaces the old one, --relay '' empties it"
	}
	fs.StringVar(&o.description, "description", "", "`TEXT` that says what the office is")
	fs.StringVar(&o.location, "location", "", "`TEXT` that says where the office is, like \"Berlin, DE\"")
	fs.StringVar(&o.mode, "mode", "", "`MODE`: direct (agents fetch from the file server; the coordinator's default), relay (through the office's relays) "+
		"or distribution (through a distribution server that stages every artifact before agents hear of a revision)")
	fs.StringVar(&o.distServer, "distribution-server", "", "mode distribution: `HOST:PORT` of the relay that pre-stages the office's content (HTTPS), or an http(s) URL")
	fs.BoolVar(&o.plainHTTP, "allow-plain-http", false, "let the office's relays serve plain http:// (off for new offices; --allow-plain-http=false turns it off)")
	fs.Var(&o.relays, "relay", relayHelp)
	fs.Var((*ttlFlag)(&o.interval), "interval", "how often agents check in, a `DURATION` from 5s to 24h (the coordinator's default is 2m)")
	fs.StringVar(&o.timeZone, "time-zone", "", "the office's IANA time `ZONE`, like Europe/Berlin; deployment windows are in it (the coordinator's default is UTC)")
	subnetHelp := "an address range the office owns, a `CIDR` like 10.1.0.0/16: agents the coordinator sees connect from it are placed here; repeat for several"
	egressHelp := "an address the office's computers reach the coordinator from (its NAT's public address), an `ADDRESS` or CIDR: agents seen there and reporting an address in the office's subnets are placed here; repeat for several"
	if edit {
		subnetHelp += "; the given list replaces the old one, --subnet '' empties it"
		egressHelp += "; the given list replaces the old one, --egress '' empties it"
	}
	fs.Var(&o.subnets, "subnet", subnetHelp)
	fs.Var(&o.egress, "egress", egressHelp)
}

// fields returns the office fields given on the command line, as the API
// names them, so that edit changes only those.
func (o *officeFlags) fields(fs *flag.FlagSet) (map[string]any, error) {
	body := map[string]any{}
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "description":
			body["description"] = o.description
		case "location":
			body["location"] = o.location
		case "mode":
			if o.mode != "direct" && o.mode != "relay" && o.mode != "distribution" {
				err = usagef("--mode %q: want direct, relay or distribution", o.mode)
			}
			body["mode"] = o.mode
		case "relay":
			relays := []string{}
			for _, r := range o.relays {
				if r == "" {
					continue
				}
				if e := checkURL(r); e != nil {
					err = usagef("--relay: %v", e)
				}
				relays = append(relays, r)
			}
			body["relays"] = relays
		case "interval":
			if o.interval <= 0 {
				err = usagef("--interval %s: want a positive duration such as 2m", o.interval)
			}
			body["checkin_interval"] = shortDuration(o.interval)
		case "time-zone":
			body["time_zone"] = o.timeZone
		case "allow-plain-http":
			body["allow_plain_http"] = o.plainHTTP
		case "distribution-server":
			body["distribution_server"] = o.distServer
		case "subnet":
			subnets := []string{}
			for _, c := range o.subnets {
				if c == "" {
					continue
				}
				if _, _, e := net.ParseCIDR(c); e != nil {
					err = usagef("--subnet %q: want a CIDR range such as 10.1.0.0/16", c)
				}
				subnets = append(subnets, c)
			}
			body["subnets"] = subnets
		case "egress":
			egress := []string{}
			for _, c := range o.egress {
				if c == "" {
					continue
				}
				if _, _, e := net.ParseCIDR(c); e != nil && net.ParseIP(c) == nil {
					err = usagef("--egress %q: want an address or a CIDR range such as 203.0.113.7 or 203.0.113.0/28", c)
				}
				egress = append(egress, c)
			}
			body["egress"] = egress
		}
	})
	return body, err
}

func officeCommands() []*command {
	return []*command{
		{
			name: "office add", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "create an office",
			timeout: defaultTimeout,
			help: `NAME is 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.
An office in relay mode needs at least one --relay.

Examples:
  outpost office add berlin --description "Berlin branch" --location "Berlin, DE"
  outpost office add hamburg --mode relay --relay https://10.2.0.5:8090 --interval 5m
  outpost office add lyon --mode distribution --distribution-server 10.4.0.5:8090
  outpost office add paris --subnet 10.3.0.0/16 --subnet 192.168.30.0/24 --time-zone Europe/Paris
`,
			setup: func(fs *flag.FlagSet) runFunc {
				var o officeFlags
				o.register(fs, false)
				return func(ctx context.Context, e *env, args []string) error {
					body, err := o.fields(fs)
					if err != nil {
						return err
					}
					body["name"] = args[0]
					raw, err := e.api.send(ctx, http.MethodPost, "/v1/offices", body)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var off office
					if err := decode(raw, "office", &off); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "office %s created (mode %s, check-in every %s)\n", off.Name, orDash(off.Mode), orDash(off.CheckinInterval))
					return err
				}
			},
		},
		{
			name: "office list", maxArgs: 0,
			summary: "list offices",
			timeout: defaultTimeout,
			help: `Examples:
  outpost office list
  outpost office list --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/offices", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var list struct {
						Offices []office `json:"offices"`
					}
					if err := decode(raw, "office list", &list); err != nil {
						return err
					}
					if len(list.Offices) == 0 {
						_, err := fmt.Fprintln(e.stderr, "no offices yet; create one with: outpost office add NAME")
						return err
					}
					rows := make([][]string, 0, len(list.Offices))
					for _, o := range list.Offices {
						rows = append(rows, []string{o.Name, orDash(o.Mode), orDash(o.CheckinInterval), orDash(o.TimeZone),
							orDash(strings.Join(o.Subnets, ",")), strconv.FormatInt(o.Revision, 10), strconv.Itoa(o.Agents), orDash(o.Location), o.Description})
					}
					return writeTable(e.stdout, []string{"NAME", "MODE", "INTERVAL", "TIME ZONE", "SUBNETS", "REVISION", "AGENTS", "LOCATION", "DESCRIPTION"}, rows)
				}
			},
		},
		{
			name: "office show", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "show an office",
			timeout: defaultTimeout,
			help: `Examples:
  outpost office show berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, officePath(args[0]), nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var o office
					if err := decode(raw, "office", &o); err != nil {
						return err
					}
					rows := [][2]string{
						{"name", o.Name},
						{"description", orDash(o.Description)},
						{"location", orDash(o.Location)},
						{"mode", orDash(o.Mode)},
					}
					if o.Mode == "distribution" {
						rows = append(rows, [2]string{"distribution server", orDash(o.DistributionServer)},
							[2]string{"staging", stagingLine(o.Staging)})
					}
					return writeFields(e.stdout, append(rows, [][2]string{
						{"relays", orDash(strings.Join(o.Relays, ", "))},
						{"plain HTTP", map[bool]string{true: "allowed", false: "refused"}[o.AllowPlainHTTP]},
						{"check-in interval", orDash(o.CheckinInterval)},
						{"time zone", orDash(o.TimeZone)},
						{"subnets", orDash(strings.Join(o.Subnets, ", "))},
						{"egress", orDash(strings.Join(o.Egress, ", "))},
						{"policy revision", strconv.FormatInt(o.Revision, 10)},
						{"agents", strconv.Itoa(o.Agents)},
						{"gossip key", rotationLine(o.Rotation)},
						{"created", timeAndAge(e.now(), o.Created.Time)},
					}...))
				}
			},
		},
		{
			name: "office edit", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "change an office; only the flags given change",
			timeout: defaultTimeout,
			help: `Examples:
  outpost office edit berlin --interval 5m
  outpost office edit berlin --mode relay --relay https://10.1.0.5:8090 --relay https://10.1.0.6:8090
  outpost office edit lab --allow-plain-http --relay http://10.9.0.5:8090
  outpost office edit berlin --mode direct --relay ''
  outpost office edit berlin --subnet 10.1.0.0/16 --time-zone Europe/Berlin
  outpost office edit berlin --subnet ''
  outpost office edit berlin --egress 203.0.113.7   # the office's NAT, as the coordinator sees it
`,
			setup: func(fs *flag.FlagSet) runFunc {
				var o officeFlags
				o.register(fs, true)
				return func(ctx context.Context, e *env, args []string) error {
					body, err := o.fields(fs)
					if err != nil {
						return err
					}
					if len(body) == 0 {
						return usagef("nothing to change: pass at least one of --description, --location, --mode, --relay, --distribution-server, --allow-plain-http, --interval, --time-zone, --subnet, --egress")
					}
					// The office before, to say what changed.
					var before map[string]any
					if !e.json {
						if raw, err := e.api.get(ctx, officePath(args[0]), nil); err == nil {
							_ = json.Unmarshal(raw, &before)
						}
					}
					raw, err := e.api.send(ctx, http.MethodPatch, officePath(args[0]), body)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var off office
					if err := decode(raw, "office", &off); err != nil {
						return err
					}
					var after map[string]any
					_ = json.Unmarshal(raw, &after)
					changes := fieldChanges(before, after, body)
					if len(changes) == 0 {
						_, err = fmt.Fprintf(e.stdout, "office %s unchanged: it had these settings already\n", off.Name)
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "office %s updated: %s\n", off.Name, strings.Join(changes, "; "))
					return err
				}
			},
		},
		{
			name: "office rotate-key", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "replace an office's gossip key (a laptop was stolen, a member went bad)",
			timeout: defaultTimeout,
			help: `Every member of an office holds its gossip key. The coordinator replaces it
in three phases, each three check-in intervals long: members install the new
key beside the old, switch to it, then drop the old, so that the office never
splits. A member away for the whole rotation rejoins with the keys its next
check-in brings. Removing an agent or relay (outpost agent rm) rotates its
office's key too. 'outpost office show NAME' shows the phase while it runs.

Examples:
  outpost office rotate-key berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.send(ctx, http.MethodPost, officePath(args[0])+"/gossip-key/rotate", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					_, err = fmt.Fprintf(e.stdout, "office %s: gossip key rotation started; members take the new key over the next check-in intervals\n", args[0])
					return err
				}
			},
		},
		{
			name: "office rm", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "remove an office, moving its computers to another with --move-to",
			timeout: defaultTimeout,
			help: `The coordinator refuses while computers are in the office or have it as home,
unless --move-to names the office they go to: it becomes their home and
current office in the same transaction that removes this one, and the
computers added to this office by name go there too. The office's tokens and
policy are removed with it.

Examples:
  outpost office rm hamburg
  outpost office rm hamburg --move-to berlin
`,
			setup: func(fs *flag.FlagSet) runFunc {
				moveTo := fs.String("move-to", "", "`OFFICE` that takes the removed office's computers")
				return func(ctx context.Context, e *env, args []string) error {
					path := officePath(args[0])
					if *moveTo != "" {
						if *moveTo == args[0] {
							return usagef("--move-to %s is the office being removed: name another office", *moveTo)
						}
						path += "?" + url.Values{"move_to": {*moveTo}}.Encode()
					}
					if _, err := e.api.send(ctx, http.MethodDelete, path, nil); err != nil {
						return err
					}
					if e.json {
						return nil
					}
					msg := fmt.Sprintf("office %s removed\n", args[0])
					if *moveTo != "" {
						msg = fmt.Sprintf("office %s removed; its computers are in %s now\n", args[0], *moveTo)
					}
					_, err := fmt.Fprint(e.stdout, msg)
					return err
				}
			},
		},
	}
}

// rotationLine says where a gossip key rotation is.
func rotationLine(phase string) string {
	switch phase {
	case "":
		return "in use"
	case "install":
		return "being replaced: members are installing the new key"
	case "use":
		return "being replaced: members have switched to the new key; the old one goes next"
	}
	return "being replaced (" + phase + ")"
}

// stagingLine says how far the distribution server has come with the
// newest revision, and what the office's agents have been told.
func stagingLine(st *staging) string {
	if st == nil {
		return "no report from the distribution server yet"
	}
	line := fmt.Sprintf("revision %d: %d of %d artifacts (%s of %s)", st.Revision, st.Staged, st.Artifacts,
		byteSize(st.StagedBytes), byteSize(st.Bytes))
	if st.Artifacts == 0 && !st.Complete {
		line = fmt.Sprintf("revision %d: waiting for the distribution server's report", st.Revision)
	}
	if st.Complete {
		line += ", complete"
	}
	line += fmt.Sprintf("; agents told of revision %d", st.Released)
	if st.Error != "" {
		line += "; last error: " + st.Error
	}
	return line
}

// fieldChanges says, for the fields a change asked for, which moved and
// from what to what ("mode: relay → direct").
func fieldChanges(before, after map[string]any, asked map[string]any) []string {
	show := func(v any) string {
		switch x := v.(type) {
		case nil:
			return "-"
		case string:
			if x == "" {
				return "-"
			}
			return x
		case []any:
			if len(x) == 0 {
				return "-"
			}
			var parts []string
			for _, p := range x {
				parts = append(parts, fmt.Sprint(p))
			}
			return strings.Join(parts, ",")
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(asked)) {
		if was, now := show(before[k]), show(after[k]); was != now {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, was, now))
		}
	}
	return out
}
