// Package cli is outpost, the admin command line of an Outpost coordinator.
// It turns commands such as "office add" or "artifact push" into calls of the
// coordinator's admin HTTP API (docs/api.md) and prints the answers as tables
// for people or as the API's own JSON for scripts.
//
// It keeps no state between runs and holds no business rules: the coordinator
// validates everything, and the CLI checks only what it can say better before
// a round trip (flag syntax, enumerations). It is not a Go client library for
// the API; programs should speak HTTP directly.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/didyoumean"
	"golang.org/x/term"
)

// Version is the CLI's version, stamped at build time with
// -ldflags "-X github.com/outposthq/outpost/coordinator/internal/cli.Version=v1.2.3".
var Version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitInterrupted is a shell's status for a command stopped by Ctrl-C
	// (128 + SIGINT).
	exitInterrupted = 130
)

const (
	defaultServer  = "http://127.0.0.1:8020"
	defaultTimeout = 30 * time.Second
)

// Main runs the outpost command line with args (without the program name)
// and returns the process exit code: 0 ok, 1 error, 2 usage. It reads the
// OUTPOST_* environment through getenv and stops its work when ctx ends.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return newApp(stdin, stdout, stderr, getenv).run(ctx, args)
}

// app is one run of the command line and what it may touch.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// now is the clock for relative times, rates and ages; tests fix it.
	now func() time.Time
	// transport carries the API calls; nil means a clone of
	// http.DefaultTransport.
	transport http.RoundTripper
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}
}

// usageError is a mistake on the command line: it exits with 2 and points at
// the help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// timeoutError is the cause of a context that ran out of --timeout.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return "timed out after " + shortDuration(e.after) }

var errInterrupted = errors.New("interrupted")

func (a *app) run(ctx context.Context, args []string) int {
	g := newGlobals()
	fs := newFlagSet("outpost")
	g.register(fs)
	// --version (and -v, which no command has) only before any command,
	// as "outpost --version" is a habit from other tools.
	var version bool
	fs.BoolVar(&version, "version", false, "")
	fs.BoolVar(&version, "v", false, "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		a.printTopUsage(a.stdout)
		return exitOK
	}
	if err != nil {
		return a.fail(nil, g, flagUsageError(fs, err))
	}
	g.noteGiven(fs)
	rest := fs.Args()
	if version {
		return a.exec(ctx, g, findCommand("version"), rest)
	}
	if len(rest) == 0 {
		a.printTopUsage(a.stderr)
		return exitUsage
	}
	if rest[0] == "help" {
		return a.help(rest[1:])
	}
	if cmd := findCommand(rest[0]); cmd != nil {
		return a.exec(ctx, g, cmd, rest[1:])
	}
	grp := findGroup(rest[0])
	if grp == nil {
		if w, ok := didyoumean.Closest(rest[0], topWords()); ok {
			return a.fail(nil, g, usagef("unknown command %q (did you mean %q?); commands: %s", rest[0], w, strings.Join(topWords(), ", ")))
		}
		return a.fail(nil, g, usagef("unknown command %q; commands: %s", rest[0], strings.Join(topWords(), ", ")))
	}
	// Global flags may also sit between the group and its command:
	// "outpost office --output json list".
	fs = newFlagSet("outpost " + grp.name)
	g.register(fs)
	err = fs.Parse(rest[1:])
	if errors.Is(err, flag.ErrHelp) {
		a.printGroupUsage(a.stdout, grp)
		return exitOK
	}
	if err != nil {
		return a.fail(nil, g, flagUsageError(fs, err))
	}
	g.noteGiven(fs)
	rest = fs.Args()
	if len(rest) == 0 {
		a.printGroupUsage(a.stderr, grp)
		return exitUsage
	}
	cmd := findCommand(grp.name + " " + rest[0])
	if cmd == nil {
		return a.fail(nil, g, usagef("unknown command \"%s %s\"%s; %s commands: %s", grp.name, rest[0], didyoumean.Hint(rest[0], grp.words()), grp.name, strings.Join(grp.words(), ", ")))
	}
	return a.exec(ctx, g, cmd, rest[1:])
}

// exec parses a command's flags and arguments, connects it to the API and
// runs it.
func (a *app) exec(ctx context.Context, g *globals, cmd *command, args []string) int {
	fs := newFlagSet("outpost " + cmd.name)
	g.register(fs)
	run := cmd.setup(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.printCommandUsage(a.stdout, cmd)
		return exitOK
	}
	if err != nil {
		if hint := commandFlagHint(fs, cmd, args, err); hint != nil {
			return a.fail(cmd, g, hint)
		}
		return a.fail(cmd, g, flagUsageError(fs, err))
	}
	g.noteGiven(fs)
	if err := cmd.checkArgs(pos); err != nil {
		return a.fail(cmd, g, err)
	}
	env, err := a.newEnv(g, cmd)
	if err != nil {
		return a.fail(cmd, g, err)
	}
	if env.api != nil {
		env.api.check = cmd.checkWith(pos, fs)
	}
	timeout := cmd.timeout
	if g.given["timeout"] {
		timeout = g.timeout
	}
	outer := ctx // ends on Ctrl-C or SIGTERM (main)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, &timeoutError{after: timeout})
		defer cancel()
	}
	if err := run(ctx, env, pos); err != nil {
		if outer.Err() != nil {
			// Stopped by the user: said once, with the shell's status for
			// an interrupt, whatever the work's own error was.
			fmt.Fprintf(a.stderr, "outpost: %s: interrupted\n", cmd.name)
			return exitInterrupted
		}
		return a.fail(cmd, g, unknownOfficeHint(outer, env, err))
	}
	return exitOK
}

// officeNotFound is the API's answer for an office it does not have, which
// says nothing of what to do.
var officeNotFound = regexp.MustCompile(`^office (\S+): not found$`)

// unknownOfficeHint adds to the API's "office NAME: not found" the office
// that was likely meant and where the offices are listed; other errors it
// returns as they are.
func unknownOfficeHint(ctx context.Context, e *env, err error) error {
	var ae *apiError
	if e.api == nil || !errors.As(err, &ae) || ae.status != http.StatusNotFound {
		return err
	}
	m := officeNotFound.FindStringSubmatch(ae.message)
	if m == nil {
		return err
	}
	hint := ""
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if raw, lerr := e.api.get(ctx, "/v1/offices", nil); lerr == nil {
		var out struct {
			Offices []struct {
				Name string `json:"name"`
			} `json:"offices"`
		}
		if json.Unmarshal(raw, &out) == nil {
			names := make([]string, len(out.Offices))
			for i, o := range out.Offices {
				names[i] = o.Name
			}
			hint = didyoumean.Hint(m[1], names)
		}
	}
	return fmt.Errorf("%w%s; see outpost office list", err, hint)
}

// fail prints err as "outpost: <command>: <message>" with every secret the
// run knows of blanked out, and returns the exit code for it.
func (a *app) fail(cmd *command, g *globals, err error) int {
	prefix := "outpost: "
	if cmd != nil {
		prefix += cmd.name + ": "
	}
	msg := redact(err.Error(), g.secrets(a.getenv)...)
	fmt.Fprintf(a.stderr, "%s%s\n", prefix, msg)
	var ue *usageError
	if errors.As(err, &ue) {
		if cmd != nil {
			fmt.Fprintf(a.stderr, "Usage: outpost %s\nRun 'outpost help %s' for flags and examples.\n", cmd.usageLine(), cmd.name)
		} else {
			fmt.Fprintf(a.stderr, "Run 'outpost help' for usage.\n")
		}
		return exitUsage
	}
	// A command or shell on a host that exited non-zero: its status is
	// ours, as with ssh, so that scripts can test it.
	var se *sessionError
	if errors.As(err, &se) && se.code > 0 && se.code < 256 {
		return int(se.code)
	}
	return exitError
}

// redact replaces each secret in msg. Very short "secrets" are left alone:
// blanking every "a" in a message would hide more than it protects.
func redact(msg string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) >= 6 {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// env is what a command's run function works with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time
	api            *client
	json           bool
	// getenv and server serve commands that talk to more than the API
	// (login, host sessions).
	getenv func(string) string
	server string
	trust  trust
	// serverGiven says whether --server or OUTPOST_SERVER named server.
	serverGiven bool
}

func (a *app) newEnv(g *globals, cmd *command) (*env, error) {
	e := &env{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, now: a.now, getenv: a.getenv, server: g.server, serverGiven: g.given["server"]}
	if s := a.getenv("OUTPOST_SERVER"); s != "" && !g.given["server"] {
		e.server, e.serverGiven = s, true
	}
	e.trust = g.resolveTrust(e.server, a.getenv)
	switch g.output {
	case "table":
	case "json":
		e.json = true
	default:
		return nil, usagef("--output %q: want table or json", g.output)
	}
	if cmd.offline {
		return e, nil
	}
	server := g.server
	if !g.given["server"] {
		if s := a.getenv("OUTPOST_SERVER"); s != "" {
			server = s
		}
	}
	token, cred, err := g.resolveToken(a.getenv)
	if err != nil {
		return nil, err
	}
	if cred.kind == credSession && cred.server != "" {
		// A sign-in's token goes to the coordinator that issued it, and to
		// no other: without --server, that is where commands go.
		serverGiven := g.given["server"] || a.getenv("OUTPOST_SERVER") != ""
		switch {
		case !serverGiven:
			server, e.server = cred.server, cred.server
			e.trust = g.resolveTrust(server, a.getenv)
		case strings.TrimRight(server, "/") != strings.TrimRight(cred.server, "/"):
			return nil, fmt.Errorf("the sign-in of %s kept by outpost login is for %s, not %s: sign in there with outpost login --server %s %s, or give an admin token",
				cred.user, cred.server, server, server, cred.user)
		}
	}
	rt := a.transport
	if rt == nil {
		if rt, err = e.trust.transport(server); err != nil {
			return nil, err
		}
	}
	api, err := newClient(server, token, rt)
	if err != nil {
		return nil, err
	}
	api.cred = cred
	api.pinned = e.trust.fingerprint
	e.api = api
	return e, nil
}

// isTerminal reports whether w is a terminal, so progress can be redrawn in
// place. Being a character device is not enough: /dev/null is one too. A
// writer that is no file may say so itself (tests stand in for terminals).
func isTerminal(w io.Writer) bool {
	switch t := w.(type) {
	case *os.File:
		return term.IsTerminal(int(t.Fd()))
	case interface{ IsTerminal() bool }:
		return t.IsTerminal()
	}
	return false
}
