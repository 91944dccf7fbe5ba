// Package console is the coordinator's web console for admins, served at
// /ui/ on the admin HTTP listener: server-rendered pages (html/template)
// with embedded templates, CSS and a little JavaScript, nothing to build.
//
// The console is a client of the admin API, in-process: every read and
// change is a call to the API's http.Handler with the signed-in user's
// bearer token, so roles, validation and transactions are the API's and
// exist once. What the console owns is the browser side: sessions kept on
// the server, CSRF protection, security headers, forms that keep what the
// user typed and show the API's error beside the field it concerns.
// It is not a second API and stores nothing but sessions, in memory.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is how the console is set up.
type Config struct {
	// API is the admin API handler; the console calls it in-process.
	API http.Handler
	// IdleTimeout ends a session unused for this long (default 30m);
	// MaxAge ends any session this long after sign-in (default 12h).
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// Now is the clock; tests move it.
	Now func() time.Time
	// BodyWait bounds how long a form's body may take to arrive whole
	// (default a minute). An upload's file streams instead, under the
	// API's idle limit.
	BodyWait time.Duration
	// SweepEvery is how often Run ends the sessions that expired
	// (default a minute).
	SweepEvery time.Duration
}

// Console is the web console's http.Handler, to be mounted at /ui/.
type Console struct {
	api        http.Handler
	log        *slog.Logger
	now        func() time.Time
	bodyWait   time.Duration
	sweepEvery time.Duration
	sessions   *sessions
	// tokenTries limits failed sign-ins with a pasted token per address.
	tokenTries *failures
	pages      map[string]*template.Template
	mux        *http.ServeMux
}

// New builds the console; it starts nothing.
func New(cfg Config, logger *slog.Logger) (*Console, error) {
	if cfg.API == nil {
		return nil, errors.New("console: no API handler")
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BodyWait == 0 {
		cfg.BodyWait = time.Minute
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = time.Minute
	}
	c := &Console{api: cfg.API, log: logger.With("component", "console"), now: cfg.Now, bodyWait: cfg.BodyWait, sweepEvery: cfg.SweepEvery,
		sessions:   &sessions{idle: cfg.IdleTimeout, max: cfg.MaxAge, now: cfg.Now, byID: map[string]*session{}},
		tokenTries: &failures{perMinute: 30, by: map[string][]time.Time{}},
		pages:      map[string]*template.Template{}, mux: http.NewServeMux()}
	c.sessions.ended = c.endSignIn
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("console template %s: %w", n, err)
		}
		c.pages[base] = t
	}
	return nil
}

// handler is a page or form handler of a signed-in session.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	c.mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	c.mux.HandleFunc("GET /ui/login", c.loginPage)
	c.mux.HandleFunc("POST /ui/login", c.login)
	pages := map[string]handler{
		"GET /ui/{$}":                                c.dashboard,
		"POST /ui/logout":                            c.logout,
		"GET /ui/offices":                            c.offices,
		"GET /ui/offices/+new":                       c.newOffice,
		"POST /ui/offices":                           c.createOffice,
		"GET /ui/offices/{name}":                     c.showOffice,
		"POST /ui/offices/{name}":                    c.updateOffice,
		"POST /ui/offices/{name}/delete":             c.deleteOffice,
		"POST /ui/offices/{name}/computers":          c.addComputers,
		"POST /ui/offices/{name}/computers/rm":       c.removeComputer,
		"POST /ui/offices/{name}/tokens":             c.createToken,
		"POST /ui/offices/{name}/tokens/{id}/revoke": c.revokeToken,
		"GET /ui/offices/{name}/policy":              c.showPolicy,
		"POST /ui/offices/{name}/policy":             c.applyPolicy,
		"GET /ui/offices/{name}/permissions":         c.officePermissions,
		"POST /ui/offices/{name}/permissions":        c.setOfficePermissions,
		"GET /ui/policies":                           c.policies,
		"GET /ui/policies/+new":                      c.newNamedPolicy,
		"POST /ui/policies":                          c.createNamedPolicy,
		"GET /ui/policies/{name}":                    c.showNamedPolicy,
		"POST /ui/policies/{name}":                   c.updateNamedPolicy,
		"POST /ui/policies/{name}/delete":            c.deleteNamedPolicy,
		"POST /ui/agents/{id}/labels":                c.setLabels,
		"GET /ui/agents":                             c.agents,
		"GET /ui/agents/{id}":                        c.showAgent,
		"POST /ui/agents/{id}/move":                  c.moveAgent,
		"POST /ui/agents/{id}/delete":                c.deleteAgent,
		"POST /ui/offices/{name}/rotate":             c.rotateKey,
		"GET /ui/agents/{id}/permissions":            c.hostPermissions,
		"POST /ui/agents/{id}/permissions":           c.setHostPermissions,
		"GET /ui/artifacts":                          c.artifacts,
		"POST /ui/artifacts":                         c.uploadArtifact,
		"POST /ui/artifacts/{sha256}/delete":         c.removeArtifact,
		"GET /ui/patches":                            c.patches,
		"POST /ui/patches/import":                    c.importPatches,
		"GET /ui/patches/{id}":                       c.showPatch,
		"POST /ui/patches/{id}/approve":              c.approvePatch,
		"POST /ui/patches/{id}/revoke":               c.revokePatch,
		"POST /ui/patches/{id}/delete":               c.removePatch,
		"GET /ui/patch-rules":                        c.patchRules,
		"GET /ui/patch-rules/+new":                   c.newRule,
		"POST /ui/patch-rules":                       c.createRule,
		"POST /ui/patch-rules/+evaluate":             c.evaluateRules,
		"GET /ui/patch-rules/{name}":                 c.showRule,
		"POST /ui/patch-rules/{name}":                c.updateRule,
		"POST /ui/patch-rules/{name}/delete":         c.deleteRule,
		"GET /ui/users":                              c.users,
		"POST /ui/users":                             c.createUser,
		"GET /ui/users/{name}":                       c.showUser,
		"POST /ui/users/{name}":                      c.updateUser,
		"POST /ui/users/{name}/delete":               c.deleteUser,
		"GET /ui/groups":                             c.groups,
		"POST /ui/groups":                            c.createGroup,
		"GET /ui/groups/{name}":                      c.showGroup,
		"POST /ui/groups/{name}":                     c.updateGroup,
		"POST /ui/groups/{name}/delete":              c.deleteGroup,
		"GET /ui/audit":                              c.audit,
	}
	for pattern, h := range pages {
		c.mux.Handle(pattern, c.signedIn(h))
	}
	c.mux.Handle("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.get(r)
		if s == nil {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		c.errorPage(w, r, s, http.StatusNotFound, fmt.Sprintf("There is no page %s in the console.", r.URL.Path))
	}))
}

// Run ends the sessions that expired every SweepEvery, and every session
// when ctx ends (sessions live in memory: a stopped coordinator has none),
// each with its sign-in at the API. It returns when ctx ends.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.sessions.endAll("the coordinator stopped")
			return nil
		case <-t.C:
			c.sessions.sweep()
		}
	}
}

// ServeHTTP serves the console with its security headers. A request's
// body must arrive whole within BodyWait, one that no handler reads too
// (net/http reads what a handler left, up to 256 KiB, before it answers):
// the server has no read timeout, for uploads, whose file the API's idle
// limit bounds instead. net/http clears the deadline once the body is read
// to its end.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(c.bodyWait))
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

// signedIn runs h for a live session, after the CSRF checks on a POST;
// without a session a page goes to the sign-in form.
func (c *Console) signedIn(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.get(r)
		if s == nil {
			if r.Method != http.MethodGet {
				http.Error(w, "your session has ended: sign in again", http.StatusForbidden)
				return
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.log.Warn("cross-origin POST refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "referer", r.Header.Get("Referer"))
				http.Error(w, "refused: this request did not come from the console's own pages", http.StatusForbidden)
				return
			}
			// A form is read whole, and a multipart one's files would be
			// spooled to disk: bound it. The upload streams instead.
			if !isUpload(r) {
				r.Body = http.MaxBytesReader(w, r.Body, maxForm)
				var mbe *http.MaxBytesError
				// ParseMultipartForm drops ParseForm's error (a URL-encoded
				// form's read) for ErrNotMultipart: ask for it first.
				err := r.ParseForm()
				if err == nil {
					err = r.ParseMultipartForm(maxForm)
				}
				if errors.As(err, &mbe) {
					http.Error(w, fmt.Sprintf("refused: the form is larger than %d MiB", maxForm>>20), http.StatusRequestEntityTooLarge)
					return
				}
				if timedOut(err) {
					c.formTooSlow(w)
					return
				}
			}
			// An upload carries the token in a header (or in its first
			// multipart field, checked by the handler as it streams).
			if !isUpload(r) && !tokenEqual(r.PostFormValue("csrf"), s.csrf) && !tokenEqual(r.Header.Get("X-CSRF-Token"), s.csrf) {
				http.Error(w, "refused: the form's security token is missing or stale; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		err := h(w, r, s)
		var ae *apiError
		switch {
		case err == nil:
		case errors.Is(err, errSignedOut):
			c.sessions.end(s, "the API refused its credentials")
			clearCookie(w, r, sessionCookie)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/login?ended=1", http.StatusSeeOther)
				return
			}
			http.Error(w, errSignedOut.Error(), http.StatusUnauthorized)
		case errors.As(err, &ae):
			c.errorPage(w, r, s, ae.Status, ae.Msg)
		default:
			c.log.Error("console page failed", "path", r.URL.Path, "err", err)
			c.errorPage(w, r, s, http.StatusInternalServerError, "Something went wrong on the coordinator; see its log.")
		}
	})
}

// maxForm bounds a form post: the largest, a patch feed, is 4 MiB, and
// net/http reads no more than 10 MiB of a URL-encoded form either.
const maxForm = 10 << 20

func isUpload(r *http.Request) bool {
	return r.URL.Path == "/ui/artifacts"
}

// timedOut says whether err is a read that ran into its deadline.
func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// formTooSlow answers a form whose body did not arrive within BodyWait.
func (c *Console) formTooSlow(w http.ResponseWriter) {
	http.Error(w, fmt.Sprintf("the form did not arrive within %v: send it again", c.bodyWait), http.StatusRequestTimeout)
}

// pageData is what every template gets.
//
// Admin and CanChange only decide which controls a page offers: a form
// the API would refuse for the user's role is left out, with a note. The
// API still decides every change; a hand-made POST is refused there.
type pageData struct {
	Title string
	Nav   string
	User  string
	Role  string
	// Admin may change users, groups and host permissions.
	Admin bool
	// CanChange may change the fleet: offices, agents, policies,
	// artifacts, patches and their rules. A read-only user may not.
	CanChange bool
	CSRF      string
	Flash     string
	Error     string
	Form      *form
	D         any
}

// canChangeFleet mirrors the API's rule that changes to the fleet need
// an operator or above (requiredRole in the api package).
func canChangeFleet(role string) bool {
	return role == "operator" || role == "admin"
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, nav, title string, f *form, d any) error {
	t := c.pages[name]
	if t == nil {
		return fmt.Errorf("no console template %s", name)
	}
	p := pageData{Title: title, Nav: nav, Form: f, D: d}
	if s != nil {
		s.mu.Lock()
		p.User, p.Role = s.user, s.role
		s.mu.Unlock()
		p.Admin, p.CanChange = p.Role == "admin", canChangeFleet(p.Role)
		p.CSRF, p.Flash = s.csrf, s.takeFlash()
	}
	if p.Form == nil {
		p.Form = newForm(nil)
	}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write([]byte(buf.String()))
	return err
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	title := http.StatusText(status)
	// Back to the page the refused form was on, when it was one of ours.
	back := ""
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && strings.HasPrefix(ref.Path, "/ui/") && ref.Path != r.URL.Path {
		back = ref.RequestURI()
	}
	if err := c.render(w, r, s, status, "error", "", title, nil, map[string]any{"Message": msg, "Status": status, "Back": back}); err != nil {
		c.log.Error("render error page", "err", err)
		http.Error(w, msg, status)
	}
}

// done ends a successful form: a message for the next page, and a
// redirect so that reloading does not post again.
func done(w http.ResponseWriter, r *http.Request, s *session, to, msg string) error {
	if msg != "" {
		s.setFlash(msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}
