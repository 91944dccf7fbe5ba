package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outposthq/outpost/pkg/didyoumean"
)

// runFunc does a command's work once flags and arguments are parsed.
type runFunc func(ctx context.Context, e *env, args []string) error

// command is one leaf of the command tree, such as "office add".
type command struct {
	name    string // words after "outpost"
	args    string // positional arguments as shown in the usage line
	minArgs int
	maxArgs int
	summary string
	// help is the description and examples shown by "help COMMAND".
	help string
	// timeout is the default of --timeout for this command; 0 is no limit.
	timeout time.Duration
	// offline commands need neither server nor token.
	offline bool
	// globals lists the global flags that matter to an offline command,
	// for its help; commands that call the API take them all.
	globals string
	// setup registers the command's flags on fs and returns the function
	// that runs it with their values.
	setup func(fs *flag.FlagSet) runFunc
	// passesCommand says that the arguments after the first are a command
	// of their own (exec): an unknown flag among them was meant for it.
	passesCommand bool
}

// group is a noun with several commands, such as "office".
type group struct {
	name    string
	summary string
}

var groups = []group{
	{"office", "create, list, change and remove offices"},
	{"token", "enrollment tokens that let agents and relays join an office"},
	{"artifact", "upload, inspect and remove artifacts, the files policy items install"},
	{"policy", "apply and show policies: an office's own, or named ones for offices, agents, labels"},
	{"agent", "enrolled agents, their compliance, and waiting for a rollout"},
	{"installer", "build what an office's computers install: agent, config, systemd unit, .deb"},
	{"patch", "the patch catalog, approvals by hand and by rule, and missing patches"},
	{"user", "people who sign in: admins, operators, read-only users and technicians"},
	{"group", "groups of users that host permissions name"},
	{"perm", "who may do what on hosts: per office or per host, deny wins"},
}

// commands is filled by each group's file; the order is the help's order.
var commands = []*command{}

func register(cmds ...*command) {
	commands = append(commands, cmds...)
}

func init() {
	register(officeCommands()...)
	register(computerCommands()...)
	register(tokenCommands()...)
	register(artifactCommands()...)
	register(policyCommands()...)
	register(agentCommands()...)
	register(installerCommands()...)
	register(patchCommands()...)
	register(loginCommands()...)
	register(accessCommands()...)
	register(hostCommands()...)
	register(scopeCommands()...)
	register(backupCommands()...)
	register(caCommand())
	register(versionCommand())
}

// checkWith names, for the commands whose list does not show their effect
// or needs an argument, the command that shows it; %s is the first
// argument, and {office} and {host} are those flags as given (nothing when
// not given), since perm show and token list need them.
var checkWith = map[string]string{
	"office edit":         "outpost office show %s",
	"office add-computer": "outpost office computers %s",
	"office rm-computer":  "outpost office computers %s",
	"agent move":          "outpost agent show %s",
	"agent label":         "outpost agent show %s",
	"installer build":     "outpost token list {office}",
	"patch approve":       "outpost patch approvals",
	"patch revoke":        "outpost patch approvals",
	"patch rm":            "outpost patch list",
	"patch rule":          "outpost patch rules",
	"patch evaluate":      "outpost patch approvals",
	"perm set":            "outpost perm show {office}{host}",
	"perm add":            "outpost perm show {office}{host}",
	"perm remove":         "outpost perm show {office}{host}",
}

// checkWith is the command that shows whether a change that c made with
// the arguments args and the flags of fs took effect: its own, else its
// group's list, else "".
func (c *command) checkWith(args []string, fs *flag.FlagSet) string {
	if t, ok := checkWith[c.name]; ok {
		for _, name := range []string{"office", "host"} {
			v := ""
			if f := fs.Lookup(name); f != nil && f.Value.String() != "" {
				v = " --" + name + " " + shellQuote([]string{f.Value.String()})
			}
			t = strings.Replace(t, " {"+name+"}", v, 1)
			t = strings.Replace(t, "{"+name+"}", v, 1)
		}
		if strings.Contains(t, "%s") {
			if len(args) == 0 {
				return ""
			}
			return fmt.Sprintf(t, shellQuote(args[:1]))
		}
		return t
	}
	if grp, _, ok := strings.Cut(c.name, " "); ok && findCommand(grp+" list") != nil {
		return "outpost " + grp + " list"
	}
	return ""
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func findGroup(name string) *group {
	for i := range groups {
		if groups[i].name == name {
			return &groups[i]
		}
	}
	return nil
}

// words are the group's command names: add, list, ...
func (g *group) words() []string {
	var w []string
	for _, c := range commands {
		if rest, ok := strings.CutPrefix(c.name, g.name+" "); ok {
			w = append(w, rest)
		}
	}
	return w
}

func topWords() []string {
	var w []string
	for _, g := range groups {
		w = append(w, g.name)
	}
	for _, c := range commands {
		if !strings.Contains(c.name, " ") {
			w = append(w, c.name)
		}
	}
	return append(w, "help")
}

func (c *command) usageLine() string {
	s := c.name
	if c.passesCommand && c.hasFlags() {
		// After -- everything is the host's command: outpost's flags
		// go before it.
		s += " [flags]"
	}
	if c.args != "" {
		s += " " + c.args
	}
	if !c.passesCommand && c.hasFlags() {
		s += " [flags]"
	}
	return s
}

func (c *command) hasFlags() bool {
	fs := newFlagSet(c.name)
	c.setup(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func (c *command) checkArgs(pos []string) error {
	if len(pos) < c.minArgs {
		return usagef("missing %s", c.args)
	}
	if c.maxArgs >= 0 && len(pos) > c.maxArgs {
		return usagef("unexpected argument %q", pos[c.maxArgs])
	}
	return nil
}

const globalFlagsHelp = `Global flags (before or after the command):
  --server URL       the coordinator's admin API (env OUTPOST_SERVER,
                     default ` + defaultServer + `)
  --token TOKEN      the admin token (env OUTPOST_TOKEN); a flag shows up in
                     the process list, so prefer the variable or a file
  --token-file PATH  read the admin token from a file, such as the
                     coordinator's <data-dir>/admin.token
                     (env OUTPOST_TOKEN_FILE)
  --ca-fingerprint FP  for an https:// server: trust the coordinator's own CA
                     by its fingerprint (env OUTPOST_CA_FINGERPRINT; its
                     <data-dir>/ca.fingerprint); outpost login keeps it
  --ca PATH          for an https:// server: trust this PEM CA file too
                     (env OUTPOST_CA), such as <data-dir>/ca/ca.crt
  --output FORMAT    table or json; json prints the API's answer (default table)
  --timeout D        give up after this long (default 30s; agent wait 3m;
                     artifact push no limit)
`

func (a *app) printTopUsage(w io.Writer) {
	fmt.Fprintf(w, `outpost is the admin command line of an Outpost coordinator.

Usage:
  outpost [global flags] COMMAND [flags] [arguments]

Commands:
`)
	type entry struct{ name, text string }
	var entries []entry
	for _, g := range groups {
		entries = append(entries, entry{g.name, g.summary + " (" + strings.Join(g.words(), ", ") + ")"})
	}
	for _, c := range commands {
		if !strings.Contains(c.name, " ") {
			entries = append(entries, entry{c.name, c.summary})
		}
	}
	entries = append(entries, entry{"help [COMMAND]", "show a command's flags and examples"})
	col := 0
	for _, e := range entries {
		col = max(col, len(e.name))
	}
	col += 4 // two spaces before, two after
	// Wrapped to fit 80 columns, as a terminal of that width would
	// otherwise break every line in the middle of the next column.
	for _, e := range entries {
		for i, l := range wrapWords(e.text, 80-col) {
			name := ""
			if i == 0 {
				name = e.name
			}
			fmt.Fprintf(w, "  %-*s%s\n", col-2, name, l)
		}
	}
	fmt.Fprintf(w, "\n%s\nExit codes: 0 ok, 1 error, 2 usage.\nRun 'outpost help COMMAND' for a command's flags and examples.\n", globalFlagsHelp)
}

func (a *app) printGroupUsage(w io.Writer, g *group) {
	fmt.Fprintf(w, "Usage: outpost %s COMMAND [flags] [arguments]\n\n%s.\n\nCommands:\n", g.name, upperFirst(g.summary))
	tw := newTable(w)
	for _, c := range commands {
		if rest, ok := strings.CutPrefix(c.name, g.name+" "); ok {
			args := rest
			if c.args != "" {
				args += " " + c.args
			}
			fmt.Fprintf(tw, "  %s\t%s\n", args, c.summary)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun 'outpost help %s COMMAND' for a command's flags and examples.\n", g.name)
}

func (a *app) printCommandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: outpost %s\n\n%s.\n", c.usageLine(), upperFirst(c.summary))
	if c.help != "" {
		fmt.Fprintf(w, "\n%s", strings.TrimLeft(c.help, "\n"))
	}
	fs := newFlagSet(c.name)
	c.setup(fs)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintf(w, "\nFlags:\n")
			first = false
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name // -t, as ssh -t
		}
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n        %s", line, usage)
		if def := displayDefault(f); def != "" {
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
	switch {
	case !c.offline:
		fmt.Fprintf(w, "\nGlobal flags: --server, --token, --token-file, --ca-fingerprint, --ca, --output, --timeout; see 'outpost help'.\n")
	case c.globals != "":
		fmt.Fprintf(w, "\nGlobal flags: %s; see 'outpost help'.\n", c.globals)
	}
}

func displayDefault(f *flag.Flag) string {
	if d, err := time.ParseDuration(f.DefValue); err == nil && strings.ContainsAny(f.DefValue, "hms") {
		if d == 0 {
			return ""
		}
		return shortDuration(d)
	}
	switch f.DefValue {
	case "", "0", "false":
		return ""
	}
	return f.DefValue
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// help prints the usage of what args name: nothing, a group or a command.
func (a *app) help(args []string) int {
	name := strings.Join(args, " ")
	switch {
	case name == "" || name == "help" || name == "-h" || name == "--help":
		a.printTopUsage(a.stdout)
		return exitOK
	case findCommand(name) != nil:
		a.printCommandUsage(a.stdout, findCommand(name))
		return exitOK
	case len(args) == 1 && findGroup(name) != nil:
		a.printGroupUsage(a.stdout, findGroup(name))
		return exitOK
	case findGroup(args[0]) != nil:
		// "help office nosuch": the office commands are what was meant.
		g := findGroup(args[0])
		fmt.Fprintf(a.stderr, "outpost: help: unknown command %q%s; %s commands: %s\n", name, didyoumean.Hint(strings.Join(args[1:], " "), g.words()), g.name, strings.Join(g.words(), ", "))
		a.printGroupUsage(a.stderr, g)
		return exitUsage
	}
	fmt.Fprintf(a.stderr, "outpost: help: unknown command %q%s; commands: %s\n", name, didyoumean.Hint(name, topWords()), strings.Join(topWords(), ", "))
	return exitUsage
}

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the CLI's version (also outpost --version or -v)",
		offline: true,
		globals: "--output",
		maxArgs: 0,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if e.json {
					return writeJSONValue(e.stdout, map[string]string{"version": Version, "go": goVersion()})
				}
				_, err := fmt.Fprintf(e.stdout, "outpost %s (%s)\n", Version, goVersion())
				return err
			}
		},
	}
}

// wrapWords breaks s into lines of at most width columns at spaces; a word
// longer than width has a line of its own.
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}
