package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/didyoumean"
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	server    string
	token     string
	tokenFile string
	output    string
	timeout   time.Duration
	// caFile and caFingerprint say which CA to trust for an https:// server.
	caFile        string
	caFingerprint string
	// given records which globals were on the command line, so that they
	// win over the environment and the command's own defaults.
	given map[string]bool
	// fileToken is the token read from a token file, kept to redact it.
	fileToken string
}

var globalNames = map[string]bool{"server": true, "token": true, "token-file": true, "output": true, "timeout": true, "ca": true, "ca-fingerprint": true}

func newGlobals() *globals {
	return &globals{server: defaultServer, output: "table", given: map[string]bool{}}
}

// register adds the global flags to fs. The current values are the
// defaults, so flags given at an earlier position survive a later parse.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "")
	fs.StringVar(&g.token, "token", g.token, "")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "")
	fs.StringVar(&g.output, "output", g.output, "")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "")
	fs.StringVar(&g.caFile, "ca", g.caFile, "")
	fs.StringVar(&g.caFingerprint, "ca-fingerprint", g.caFingerprint, "")
}

func (g *globals) noteGiven(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if globalNames[f.Name] {
			g.given[f.Name] = true
		}
	})
}

const tokenHint = "pass the admin token with --token or OUTPOST_TOKEN, or its file with --token-file or OUTPOST_TOKEN_FILE (the coordinator writes it to its data dir as admin.token)"

// resolveToken picks the bearer token: --token, --token-file, OUTPOST_TOKEN,
// OUTPOST_TOKEN_FILE, in that order, else the sign-in kept by outpost login.
// It says which it picked, so that a refusal can say what to do.
func (g *globals) resolveToken(getenv func(string) string) (string, credential, error) {
	admin := credential{kind: credAdmin}
	if g.given["token"] && g.given["token-file"] {
		return "", admin, usagef("pass --token or --token-file, not both")
	}
	switch {
	case g.given["token"] && g.token != "":
		return g.token, admin, nil
	case g.given["token-file"] && g.tokenFile != "":
		t, err := g.readTokenFile(g.tokenFile, "--token-file")
		return t, admin, err
	case getenv("OUTPOST_TOKEN") != "":
		return getenv("OUTPOST_TOKEN"), admin, nil
	case getenv("OUTPOST_TOKEN_FILE") != "":
		t, err := g.readTokenFile(getenv("OUTPOST_TOKEN_FILE"), "OUTPOST_TOKEN_FILE")
		return t, admin, err
	}
	return loginToken(getenv)
}

func (g *globals) readTokenFile(path, from string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the admin token (%s): %w; point it at the coordinator's <data-dir>/admin.token", from, err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token file %s (%s) is empty; point it at the coordinator's <data-dir>/admin.token", path, from)
	}
	g.fileToken = token
	return token, nil
}

// secrets lists every admin token this run has seen, to keep them out of
// anything it prints.
func (g *globals) secrets(getenv func(string) string) []string {
	return []string{g.token, g.fileToken, getenv("OUTPOST_TOKEN")}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterspersed parses fs from args, allowing flags after positional
// arguments ("office add berlin --mode relay"), and returns the positional
// arguments. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagUsageError is the usage error for err, from parsing fs; a flag fs
// does not define is followed by the one of fs it is nearest, when one is
// near: "-mod (did you mean --mode?)". One or two letters are near too
// much to guess from.
func flagUsageError(fs *flag.FlagSet, err error) error {
	bad, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok || len(bad) < 3 {
		return usagef("%v", err)
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	w, ok := didyoumean.Closest(bad, names)
	if !ok {
		return usagef("%v", err)
	}
	dashes := "--"
	if len(w) == 1 {
		dashes = "-" // -t, as the help writes it
	}
	return usagef("%v (did you mean %s%s?)", err, dashes, w)
}

// commandFlagHint explains a flag that cmd does not know but that follows
// its first argument, when cmd passes its later arguments on as a command
// (outpost exec HOST ls -la): the flag was meant for that command, which
// needs -- before it. nil when err is about something else.
func commandFlagHint(fs *flag.FlagSet, cmd *command, args []string, err error) error {
	bad, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !cmd.passesCommand || !ok || slices.Contains(args, "--") {
		return nil // with -- given, a flag before it was meant for outpost
	}
	first, second := -1, -1 // where the first two positional arguments are
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if len(a) < 2 || a[0] != '-' {
			if first < 0 {
				first = i
			} else if second < 0 {
				second = i
			}
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			if name != bad || first < 0 {
				return nil // a mistake in the flags of outpost itself
			}
			start := i
			if second >= 0 {
				start = second
			}
			return usagef("-%s is not a flag of outpost %s: to pass flags to the command, put -- before it: outpost %s %s -- %s",
				bad, cmd.name, cmd.name, shellQuote(args[:start]), shellQuote(args[start:]))
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && bf.IsBoolFlag()) {
			i++ // its value
		}
	}
	return nil
}

// shellQuote joins args as a shell reads them back: an argument with
// anything but plain characters goes in single quotes.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// ttlFlag is a lifetime flag such as --ttl: a Go duration (72h, 30m) or
// whole days (3d), since admins count token lifetimes in days.
type ttlFlag time.Duration

// newTTLFlag registers a lifetime flag with default def on fs.
func newTTLFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	d := def
	fs.Var((*ttlFlag)(&d), name, usage)
	return &d
}

func (f *ttlFlag) String() string { return shortDuration(time.Duration(*f)) }

func (f *ttlFlag) Set(s string) error {
	d, err := parseTTL(s)
	if err != nil {
		return err
	}
	*f = ttlFlag(d)
	return nil
}

// maxTTLDays keeps Nd within what a time.Duration holds (about 292 years).
const maxTTLDays = 100_000

func parseTTL(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && days <= maxTTLDays {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	return 0, errors.New("want a duration such as 72h, 30m or 3d (a day is 24h)")
}

// checkURL says whether s is an absolute http(s) URL.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an http:// or https:// URL with a host, like http://10.1.0.5:8090, got %q", s)
	}
	return nil
}

// shortDuration formats d without zero trailing units: 24h, 2m, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
