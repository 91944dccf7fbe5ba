package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// credentials are what "outpost login" keeps in the user's config
// directory (mode 0600): the signed access token, the refresh token, and
// how to reach the coordinator's QUIC port for host sessions.
type credentials struct {
	Server       string    `json:"server"`
	User         string    `json:"user"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expires      time.Time `json:"expires"`
	// RefreshExpires is when the sign-in ends unless the CLI renews it
	// before (each renewal moves it on); zero from a coordinator that
	// does not say.
	RefreshExpires time.Time `json:"refresh_expires,omitzero"`
	Role           string    `json:"role"`
	Groups         []string  `json:"groups"`
	CAFingerprint  string    `json:"ca_fingerprint"`
	QUICAddr       string    `json:"quic_addr"`
}

// credentialsPath is $OUTPOST_CONFIG_DIR/credentials.json, else under
// $XDG_CONFIG_HOME/outpost or ~/.config/outpost.
func credentialsPath(getenv func(string) string) (string, error) {
	if d := getenv("OUTPOST_CONFIG_DIR"); d != "" {
		return filepath.Join(d, "credentials.json"), nil
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "outpost", "credentials.json"), nil
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", errors.New("cannot tell where to keep the sign-in: set OUTPOST_CONFIG_DIR")
		}
	}
	return filepath.Join(home, ".config", "outpost", "credentials.json"), nil
}

func loadCredentials(getenv func(string) string) (*credentials, string, error) {
	path, err := credentialsPath(getenv)
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, path, errors.New("not signed in: run outpost login")
	}
	if err != nil {
		return nil, path, fmt.Errorf("read the sign-in %s: %w", path, err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, path, fmt.Errorf("the sign-in in %s is damaged (%v): run outpost login", path, err)
	}
	if c.RefreshToken == "" && c.AccessToken == "" {
		return nil, path, errors.New("signed out: run outpost login")
	}
	return &c, path, nil
}

// keptTrust is the coordinator and CA fingerprint of the last sign-in,
// which outpost logout keeps, so that the next login trusts the same CA.
func keptTrust(getenv func(string) string) (server, fingerprint string) {
	c := keptSignIn(getenv)
	return c.Server, c.CAFingerprint
}

// keptSignIn is what the credentials file holds, signed in or out (empty
// when there is none or it does not read).
func keptSignIn(getenv func(string) string) credentials {
	var c credentials
	path, err := credentialsPath(getenv)
	if err != nil {
		return c
	}
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, &c) != nil {
			return credentials{}
		}
	}
	return c
}

func saveCredentials(path string, c *credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the sign-in: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("save the sign-in to %s: %w", path, err)
	}
	return nil
}

type tokenAnswer struct {
	AccessToken    string    `json:"access_token"`
	RefreshToken   string    `json:"refresh_token"`
	Expires        time.Time `json:"expires"`
	RefreshExpires time.Time `json:"refresh_expires"`
	User           string    `json:"user"`
	Role           string    `json:"role"`
	Groups         []string  `json:"groups"`
	CAFingerprint  string    `json:"ca_fingerprint"`
	QUICPort       string    `json:"quic_port"`
}

func (t *tokenAnswer) credentials(server string) *credentials {
	c := &credentials{Server: server, User: t.User, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken,
		Expires: t.Expires, RefreshExpires: t.RefreshExpires, Role: t.Role, Groups: t.Groups, CAFingerprint: t.CAFingerprint}
	if u, err := url.Parse(server); err == nil && t.QUICPort != "" {
		c.QUICAddr = net.JoinHostPort(u.Hostname(), t.QUICPort)
	}
	return c
}

// fresh returns credentials whose access token has a minute left,
// refreshing (and saving) them when needed.
func fresh(ctx context.Context, getenv func(string) string) (*credentials, error) {
	c, path, err := loadCredentials(getenv)
	if err != nil {
		return nil, err
	}
	if time.Until(c.Expires) > time.Minute {
		return c, nil
	}
	// One refresh at a time: whoever waited finds the new sign-in.
	unlock, err := lockSignIn(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("lock the sign-in %s: %w", path, err)
	}
	defer unlock()
	if c, _, err = loadCredentials(getenv); err != nil {
		return nil, err
	}
	if time.Until(c.Expires) > time.Minute {
		return c, nil
	}
	rt, err := trust{fingerprint: c.CAFingerprint}.transport(c.Server)
	if err != nil {
		return nil, err
	}
	api, err := newClient(c.Server, "", rt)
	if err != nil {
		return nil, err
	}
	api.cred = credential{kind: credSession, user: c.User}
	raw, err := api.send(ctx, http.MethodPost, "/v1/login/refresh", map[string]string{"refresh_token": c.RefreshToken})
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
			return nil, ae
		}
		return nil, fmt.Errorf("refresh the sign-in: %w", err)
	}
	var t tokenAnswer
	if err := decode(raw, "tokens", &t); err != nil {
		return nil, err
	}
	n := t.credentials(c.Server)
	if n.QUICAddr == "" {
		n.QUICAddr = c.QUICAddr
	}
	if n.CAFingerprint == "" {
		n.CAFingerprint = c.CAFingerprint
	}
	if err := saveCredentials(path, n); err != nil {
		return nil, err
	}
	return n, nil
}

// loginToken is the bearer token of the signed-in user, the last resort
// when no admin token is given.
func loginToken(getenv func(string) string) (string, credential, error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTimeout)
	defer cancel()
	if _, path, err := loadCredentials(getenv); err != nil {
		if _, serr := os.Stat(path); serr == nil && !strings.HasPrefix(err.Error(), "signed out") {
			// A sign-in is there but does not read: say so, not "not signed in".
			return "", credential{}, fmt.Errorf("%w; or %s", err, tokenHint)
		}
		return "", credential{}, fmt.Errorf("not signed in and no admin token: sign in with outpost login USER, or %s", tokenHint)
	}
	c, err := fresh(ctx, getenv)
	if err != nil {
		return "", credential{}, err
	}
	return c.AccessToken, credential{kind: credSession, user: c.User, server: c.Server}, nil
}

// readPassword reads a password line from standard input. Unless fromStdin
// says a pipe or file was meant, a terminal is asked with a prompt and does
// not show what is typed.
func readPassword(e *env, fromStdin bool) (string, error) {
	if !fromStdin {
		if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return promptPassword(e, f, "Password: ")
		}
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// promptPassword asks for a password at the terminal f without echo.
func promptPassword(e *env, f *os.File, prompt string) (string, error) {
	fmt.Fprint(e.stderr, prompt)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr) // the Enter that was not echoed
	if err != nil {
		return "", fmt.Errorf("read the password from the terminal: %w", err)
	}
	return string(pw), nil
}

func loginCommands() []*command {
	return []*command{
		{
			name: "login", minArgs: 0, maxArgs: 1, args: "[USER]",
			summary: "sign in once: keep a short-lived token to reach hosts and the API",
			timeout: defaultTimeout,
			offline: true,
			globals: "--server, --ca-fingerprint, --ca, --output, --timeout",
			help: `Signs in on the coordinator with a user name and password and keeps a
short-lived signed access token and a refresh token in the user's config
directory (~/.config/outpost/credentials.json, mode 0600; OUTPOST_CONFIG_DIR
moves it). Later commands use it when no admin token is given, and
refresh it when it runs out. It says until when the sign-in lasts (12 hours
by default, the refresh token's life); each renewal moves that on, so a
sign-in in use lasts.

USER may be left out when OUTPOST_USER names the user. At a terminal the
password is asked for and not shown; --password-stdin reads it from a pipe.

Examples:
  outpost login tina
  OUTPOST_USER=tina outpost login
  echo "$PASSWORD" | outpost login tina --password-stdin
  outpost --server https://coordinator.example.org:8363 login tina
`,
			setup: func(fs *flag.FlagSet) runFunc {
				fromStdin := fs.Bool("password-stdin", false, "read the password from standard input")
				return func(ctx context.Context, e *env, args []string) error {
					user := e.getenv("OUTPOST_USER")
					if len(args) == 1 {
						user = args[0]
					}
					// Signing in again after outpost logout: the same user, at
					// the same coordinator, with the same CA pinned.
					kept := keptSignIn(e.getenv)
					if user == "" {
						user = kept.User
					}
					if user == "" {
						return usagef("name the USER to sign in as: outpost login USER, or set OUTPOST_USER")
					}
					if !e.serverGiven && kept.Server != "" {
						e.server = kept.Server
						if e.trust.caFile == "" && e.trust.fingerprint == "" {
							e.trust.fingerprint = kept.CAFingerprint
						}
					}
					pw, err := readPassword(e, *fromStdin)
					if err != nil {
						return err
					}
					rt, err := e.trust.transport(e.server)
					if err != nil {
						return err
					}
					api, err := newClient(e.server, "", rt)
					if err != nil {
						return err
					}
					api.cred = credential{kind: credSignIn}
					api.pinned = e.trust.fingerprint
					raw, err := api.send(ctx, http.MethodPost, "/v1/login", map[string]string{"user": user, "password": pw})
					if err != nil {
						var ae *apiError
						if errors.As(err, &ae) {
							return fmt.Errorf("sign-in refused: %s", ae.message)
						}
						return err
					}
					var t tokenAnswer
					if err := decode(raw, "tokens", &t); err != nil {
						return err
					}
					path, err := credentialsPath(e.getenv)
					if err != nil {
						return err
					}
					c := t.credentials(api.base)
					if err := saveCredentials(path, c); err != nil {
						return err
					}
					if e.json {
						out := map[string]any{"user": c.User, "role": c.Role, "groups": c.Groups, "expires": c.Expires, "credentials": path}
						if !c.RefreshExpires.IsZero() {
							out["refresh_expires"] = c.RefreshExpires
						}
						return writeJSONValue(e.stdout, out)
					}
					// The access token lasts minutes and is renewed by
					// itself; what the user wants to know is how long the
					// sign-in lasts.
					who := roleOrTechnician(c.Role)
					if len(c.Groups) > 0 {
						who += "; groups " + strings.Join(c.Groups, ", ")
					}
					until := ""
					if !c.RefreshExpires.IsZero() {
						until = " until " + signInEnd(e.now(), c.RefreshExpires)
					}
					_, err = fmt.Fprintf(e.stdout, "signed in as %s (%s) on %s%s; the CLI renews its token by itself, which extends the sign-in\n",
						c.User, who, api.server, until)
					return err
				}
			},
		},
		{
			name: "logout", minArgs: 0, maxArgs: 0,
			summary: "end the sign-in kept by outpost login, on the coordinator too",
			help: `The coordinator voids the sign-in's refresh token, so a copy of the kept
sign-in refreshes no more; its access token lapses within minutes. The
coordinator's address and CA fingerprint are kept for the next login.

Examples:
  outpost logout
`,
			offline: true,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					c, path, err := loadCredentials(e.getenv)
					if err != nil {
						if path == "" {
							return err
						}
						_, err = fmt.Fprintln(e.stdout, "not signed in")
						return err
					}
					var warn error
					if rt, err := (trust{fingerprint: c.CAFingerprint}).transport(c.Server); err != nil {
						warn = err
					} else if api, err := newClient(c.Server, "", rt); err != nil {
						warn = err
					} else {
						api.cred = credential{kind: credSession, user: c.User}
						_, warn = api.send(ctx, http.MethodPost, "/v1/logout", map[string]string{"refresh_token": c.RefreshToken})
						var ae *apiError
						if errors.As(warn, &ae) && ae.status == http.StatusUnauthorized {
							warn = nil // already void: expired, or revoked
						}
					}
					kept := &credentials{Server: c.Server, CAFingerprint: c.CAFingerprint, QUICAddr: c.QUICAddr, User: c.User}
					if err := saveCredentials(path, kept); err != nil {
						return err
					}
					if warn != nil {
						fmt.Fprintf(e.stderr, "outpost: logout: the coordinator was not told (%v): a copy of the sign-in stays valid there until it expires\n", warn)
					}
					_, err = fmt.Fprintln(e.stdout, "signed out")
					return err
				}
			},
		},
	}
}

// signInEnd says when a sign-in ends as a person reads it: the time of
// day, with the day when it is not today, and how long from now:
// "03:12 tomorrow (12h)".
func signInEnd(now, end time.Time) string {
	now, end = now.Local(), end.Local()
	when := end.Format("15:04")
	y, m, d := now.Date()
	switch ey, em, ed := end.Date(); {
	case ey == y && em == m && ed == d:
	case time.Date(ey, em, ed, 0, 0, 0, 0, time.Local).Equal(time.Date(y, m, d+1, 0, 0, 0, 0, time.Local)):
		when += " tomorrow"
	default:
		when = end.Format("Mon 2 Jan 15:04")
	}
	return when + " (" + shortDuration(end.Sub(now).Round(time.Minute)) + ")"
}

func roleOrTechnician(r string) string {
	if r == "" {
		return "technician"
	}
	return r
}
