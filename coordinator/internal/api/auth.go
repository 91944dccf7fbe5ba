package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// AccessNotifier tells hosts about access changes: revocations at once,
// permission lists through a newly signed policy revision of an office.
type AccessNotifier interface {
	NotifyRevocations()
}

type principalKey struct{}

// PrincipalFrom returns who the request speaks for.
func PrincipalFrom(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey{}).(*auth.Principal)
	return p
}

// publicRoutes need no token.
var publicRoutes = map[string]bool{
	"POST /v1/login":         true,
	"POST /v1/login/refresh": true,
	"POST /v1/logout":        true,
}

// requiredRole is the weakest API role a route takes. Reads are open to
// read-only; changes to the fleet need an operator; users, groups, host
// permissions and the audit trail need an admin (or, for an office's or a
// host's permissions, the manage right there). "GET /v1/me" is for
// anyone signed in, technicians included, and so are the hosts where they
// have rights (GET /v1/me/hosts), how to reach a host
// and a session token for it (the host itself decides who may do what on
// it).
func requiredRole(route string) string {
	method, path, _ := strings.Cut(route, " ")
	switch {
	case route == "GET /v1/me", route == "GET /v1/me/hosts", route == "GET /v1/hosts/{host}/reach", route == "POST /v1/hosts/{host}/session-token":
		return auth.RoleNone
	case (strings.HasPrefix(path, "/v1/offices/") || strings.HasPrefix(path, "/v1/hosts/")) && strings.HasSuffix(path, "/permissions"):
		// The handler decides: the admin role (read-only to read), or the
		// manage right on that office or host (permissions.go).
		return auth.RoleNone
	case strings.HasPrefix(path, "/v1/users"), strings.HasPrefix(path, "/v1/groups"),
		strings.HasPrefix(path, "/v1/audit"), path == "/v1/backup", strings.HasSuffix(path, "/permissions") && method != http.MethodGet:
		return auth.RoleAdmin
	case method == http.MethodGet:
		return auth.RoleReadOnly
	}
	return auth.RoleOperator
}

// authorize finds who the request speaks for and checks the route's role.
func (a *API) authorize(route string, r *http.Request) (*http.Request, error) {
	if publicRoutes[route] {
		return r, nil
	}
	p, err := a.authenticate(r)
	if err != nil {
		return r, err
	}
	need := requiredRole(route)
	if route == "other" {
		need = auth.RoleNone // let the 404 say what is wrong
	}
	if need != auth.RoleNone && auth.RoleRank(p.Role) < auth.RoleRank(need) {
		have := "role " + p.Role
		if p.Role == "" {
			have = "no API role (a technician)"
		}
		needs := "the " + need + " role or above"
		if need == auth.RoleAdmin {
			needs = "the admin role"
		}
		return r, httpError(http.StatusForbidden, "user %s has %s; this needs %s: ask an admin if it should", p.User, have, needs)
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

func (a *API) authenticate(r *http.Request) (*auth.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return nil, httpError(http.StatusUnauthorized, "missing bearer token: sign in with outpost login, or pass --token, OUTPOST_TOKEN or --token-file (the bootstrap admin token is admin.token in the coordinator's data directory)")
	}
	if !strings.HasPrefix(tok, wire.TokenPrefix) {
		// Compare digests so the comparison time does not depend on the length.
		got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(a.d.AdminToken))
		if a.d.AdminToken == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return nil, httpError(http.StatusUnauthorized, "the bearer token is not valid")
		}
		if a.d.Auth == nil {
			return &auth.Principal{User: auth.BootstrapUser, Role: auth.RoleAdmin}, nil
		}
		p, err := a.d.Auth.PrincipalOf(auth.BootstrapUser)
		if err != nil {
			return nil, httpError(http.StatusUnauthorized, "the admin token belongs to user %s, which is disabled or deleted: %v", auth.BootstrapUser, err)
		}
		return p, nil
	}
	if a.d.Auth == nil {
		return nil, httpError(http.StatusUnauthorized, "this coordinator does not take user tokens")
	}
	p, err := a.d.Auth.Verify(tok)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return nil, err
		}
		if isAuthRefusal(err) {
			return nil, httpError(http.StatusUnauthorized, "%v", err)
		}
		return nil, err
	}
	return p, nil
}

func isAuthRefusal(err error) bool {
	for _, e := range []error{wire.ErrTokenMalformed, wire.ErrTokenUnknownKey, wire.ErrTokenSignature, wire.ErrTokenExpired, wire.ErrTokenAudience,
		auth.ErrRevoked, auth.ErrDisabled, auth.ErrBadCredentials, auth.ErrRefreshInvalid, auth.ErrRefreshReplay} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (a *API) accessRoutes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"POST /v1/login":                      a.login,
		"POST /v1/login/refresh":              a.refresh,
		"POST /v1/logout":                     a.logout,
		"GET /v1/me":                          a.me,
		"GET /v1/me/hosts":                    a.myHosts,
		"POST /v1/users":                      a.createUser,
		"GET /v1/users":                       a.listUsers,
		"GET /v1/users/{name}":                a.showUser,
		"PATCH /v1/users/{name}":              a.updateUser,
		"DELETE /v1/users/{name}":             a.deleteUserAndGrants,
		"GET /v1/users/{name}/permissions":    a.showUserPermissions,
		"POST /v1/groups":                     a.createGroup,
		"GET /v1/groups":                      a.listGroups,
		"GET /v1/groups/{name}":               a.showGroup,
		"PATCH /v1/groups/{name}":             a.updateGroup,
		"DELETE /v1/groups/{name}":            a.deleteGroupAndGrants,
		"GET /v1/hosts/{id}/permissions":      a.showHostPermissions,
		"PUT /v1/hosts/{id}/permissions":      a.setHostPermissions,
		"GET /v1/offices/{name}/permissions":  a.showOfficePermissions,
		"PUT /v1/offices/{name}/permissions":  a.setOfficePermissions,
		"GET /v1/audit":                       a.listAudit,
		"GET /v1/hosts/{host}/reach":          a.hostReach,
		"POST /v1/hosts/{host}/session-token": a.hostSessionToken,
	}
}

func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *API) actor(r *http.Request) string {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p.User
	}
	return ""
}

// audit records an admin change. Handlers with detail to give call it
// themselves, right after the change is stored; handle records the others
// (changeActions).
func (a *API) audit(r *http.Request, action, target, detail string) {
	if a.d.Auth != nil {
		a.d.Auth.Audit(store.AuditEvent{Actor: a.actor(r), Action: action, Target: target, Detail: detail, Allowed: true, Remote: remoteAddr(r)})
	}
}

// changeTarget is what a change recorded by handle acted on, from its
// route's path values.
func changeTarget(route string, r *http.Request) string {
	_, path, _ := strings.Cut(route, " ")
	switch {
	case strings.Contains(path, "{hostname}"):
		return "computer " + r.PathValue("hostname") + " of office " + r.PathValue("name")
	case strings.HasPrefix(path, "/v1/offices/{name}"):
		return "office " + r.PathValue("name")
	case strings.HasPrefix(path, "/v1/patch-rules/{name}"):
		return "patch rule " + r.PathValue("name")
	}
	return ""
}

// changeActions name, in the audit trail, the admin changes whose handlers
// do not record themselves (office.create, token.create, token.revoke,
// office.policy, agent.move, agent.delete, artifact.upload,
// artifact.remove, patch.approve, patch.revoke, patch.remove and patch_rule.put do, with
// detail). handle records each one that succeeds, with what it acted on as
// the target.
var changeActions = map[string]string{
	"PATCH /v1/offices/{name}":                       "office.update",
	"DELETE /v1/offices/{name}":                      "office.delete",
	"POST /v1/offices/{name}/gossip-key/rotate":      "office.gossip_key",
	"POST /v1/offices/{name}/computers":              "computer.add",
	"DELETE /v1/offices/{name}/computers/{hostname}": "computer.remove",
	"POST /v1/offices/{name}/installer":              "installer.create",
	"POST /v1/patches/import":                        "patch.import",
	"DELETE /v1/patch-rules/{name}":                  "patch_rule.delete",
	"POST /v1/patch-rules/evaluate":                  "patch_rule.evaluate",
}

func (a *API) needAuth() error {
	if a.d.Auth == nil {
		return httpError(http.StatusNotImplemented, "users are not enabled on this coordinator")
	}
	return nil
}

// loginAnswer adds what a CLI needs to reach hosts through this
// coordinator: its QUIC address and the CA fingerprint to pin, and until
// when the sign-in lasts (its refresh token's expiry; each refresh issues
// a new one), not only its short-lived access token.
type loginAnswer struct {
	*auth.Tokens
	RefreshExpires time.Time `json:"refresh_expires"`
	CAFingerprint  string    `json:"ca_fingerprint,omitempty"`
	QUICPort       string    `json:"quic_port,omitempty"`
}

func (a *API) answerTokens(w http.ResponseWriter, t *auth.Tokens) {
	// The coordinator runs with the default refresh life (startAuth sets
	// only the access token's), counted from the refresh token's issue.
	writeJSON(w, http.StatusOK, loginAnswer{Tokens: t, RefreshExpires: time.Now().Add(auth.DefaultConfig().RefreshTTL).UTC().Truncate(time.Second),
		CAFingerprint: a.d.CAFingerprint, QUICPort: a.d.QUICPort})
}

func (a *API) signinError(err error) error {
	var le *auth.LockedError
	switch {
	case errors.As(err, &le):
		return httpError(http.StatusForbidden, "%v", err)
	case errors.Is(err, auth.ErrRateLimited):
		return httpError(http.StatusTooManyRequests, "%v", err)
	case errors.Is(err, auth.ErrDisabled):
		return httpError(http.StatusForbidden, "%v", err)
	case isAuthRefusal(err):
		return httpError(http.StatusUnauthorized, "%v", err)
	}
	return err
}

func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.User == "" || in.Password == "" {
		return httpError(http.StatusBadRequest, "user and password are required")
	}
	t, err := a.d.Auth.Login(in.User, in.Password, remoteAddr(r))
	if err != nil {
		return a.signinError(err)
	}
	a.answerTokens(w, t)
	return nil
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	t, err := a.d.Auth.Refresh(in.RefreshToken, remoteAddr(r))
	if err != nil {
		return a.signinError(err)
	}
	a.answerTokens(w, t)
	return nil
}

// logout ends the sign-in of the refresh token given (outpost logout).
func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := a.d.Auth.Logout(in.RefreshToken, remoteAddr(r)); err != nil {
		return a.signinError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	p := PrincipalFrom(r.Context())
	groups := p.Groups
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": p.User, "role": p.Role, "groups": groups})
	return nil
}

// ---- users

type userView struct {
	Name                string    `json:"name"`
	Role                string    `json:"role"`
	Disabled            bool      `json:"disabled"`
	ForceServerSecurity bool      `json:"force_server_security"`
	HasPassword         bool      `json:"has_password"`
	Groups              []string  `json:"groups"`
	LockedUntil         time.Time `json:"locked_until,omitzero"`
	Created             time.Time `json:"created"`
}

type userInput struct {
	Name                *string `json:"name"`
	Password            *string `json:"password"`
	Role                *string `json:"role"`
	Disabled            *bool   `json:"disabled"`
	ForceServerSecurity *bool   `json:"force_server_security"`
	Unlock              *bool   `json:"unlock"`
}

func (a *API) userView(u *store.User) (userView, error) {
	groups, err := a.d.Store.GroupsOf(u.Name)
	if err != nil {
		return userView{}, err
	}
	v := userView{Name: u.Name, Role: u.Role, Disabled: u.Disabled, ForceServerSecurity: u.ForceServerSecurity,
		HasPassword: u.PasswordHash != "", Groups: groups, Created: u.Created}
	if time.Now().Before(u.LockedUntil) {
		v.LockedUntil = u.LockedUntil
	}
	return v, nil
}

func (a *API) applyUser(in userInput, u *store.User) error {
	if in.Role != nil {
		if *in.Role == "technician" {
			*in.Role = "" // a technician has no API role
		}
		if !auth.ValidRole(*in.Role) {
			return httpError(http.StatusBadRequest, "role %q: want admin, operator, read-only, or technician (or \"\")", *in.Role)
		}
		u.Role = *in.Role
	}
	if in.Password != nil {
		h, err := auth.HashPassword(*in.Password, a.d.Auth.KDF())
		if err != nil {
			return httpError(http.StatusBadRequest, "%v", err)
		}
		u.PasswordHash = h
		u.FailedLogins, u.LockedUntil = 0, time.Time{}
		// A new password is the answer to an old one that leaked: the
		// sign-ins made with it end, refresh tokens included, and so do
		// the sessions hosts took on them.
		if time.Now().After(u.NotBefore) {
			u.NotBefore = time.Now()
		}
	}
	if in.Disabled != nil {
		u.Disabled = *in.Disabled
		if u.Disabled && time.Now().After(u.NotBefore) {
			u.NotBefore = time.Now()
		}
	}
	if in.ForceServerSecurity != nil {
		u.ForceServerSecurity = *in.ForceServerSecurity
	}
	if in.Unlock != nil && *in.Unlock {
		u.FailedLogins, u.LockedUntil = 0, time.Time{}
	}
	return nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in userInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil || !auth.ValidName(*in.Name) {
		return httpError(http.StatusBadRequest, "name: use 1-64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
	}
	// No token issued before now speaks for this user: one of a user
	// deleted under the same name must not come back to life.
	now := time.Now().UTC()
	u := &store.User{Name: *in.Name, Created: now, NotBefore: now}
	if err := a.applyUser(in, u); err != nil {
		return err
	}
	if err := a.d.Store.CreateUser(*u); err != nil {
		return err
	}
	a.audit(r, "user.create", u.Name, "role "+roleText(u.Role))
	v, err := a.userView(u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func roleText(r string) string {
	if r == "" {
		return "technician"
	}
	return r
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	users, err := a.d.Store.Users()
	if err != nil {
		return err
	}
	out := []userView{}
	for i := range users {
		v, err := a.userView(&users[i])
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
	return nil
}

func (a *API) showUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	u, err := a.d.Store.User(r.PathValue("name"))
	if err != nil {
		return err
	}
	v, err := a.userView(u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in userInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	name := r.PathValue("name")
	if in.Name != nil && *in.Name != name {
		return httpError(http.StatusBadRequest, "a user cannot be renamed")
	}
	if name == a.actor(r) && ((in.Disabled != nil && *in.Disabled) || (in.Role != nil && *in.Role != auth.RoleAdmin)) {
		return httpError(http.StatusBadRequest, "you cannot disable yourself or drop your own admin role: ask another admin")
	}
	u, err := a.d.Store.UpdateUser(name, func(u *store.User) error { return a.applyUser(in, u) })
	if err != nil {
		return err
	}
	var changes []string
	if in.Role != nil {
		changes = append(changes, "role "+roleText(*in.Role))
	}
	if in.Password != nil {
		changes = append(changes, "password set")
	}
	if in.Disabled != nil {
		changes = append(changes, "disabled "+strconv.FormatBool(*in.Disabled))
	}
	if in.ForceServerSecurity != nil {
		changes = append(changes, "force_server_security "+strconv.FormatBool(*in.ForceServerSecurity))
	}
	if in.Unlock != nil && *in.Unlock {
		changes = append(changes, "unlocked")
	}
	a.audit(r, "user.update", name, strings.Join(changes, ", "))
	if in.Disabled != nil && *in.Disabled {
		a.log.Info("user disabled; hosts are told at once", "user", name)
		a.notifyRevocations()
	} else if in.Password != nil {
		a.log.Info("password changed; the user's sign-ins end and hosts are told at once", "user", name)
		a.notifyRevocations()
	}
	if in.ForceServerSecurity != nil {
		a.resignAll()
	}
	v, err := a.userView(u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) notifyRevocations() {
	if a.d.Access != nil {
		a.d.Access.NotifyRevocations()
	}
}

// ---- groups

type groupInput struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Members     *[]string `json:"members"`
	Add         []string  `json:"add"`
	Remove      []string  `json:"remove"`
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in groupInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil || !auth.ValidName(*in.Name) {
		return httpError(http.StatusBadRequest, "name: use 1-64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
	}
	g := store.Group{Name: *in.Name, Members: []string{}, Created: time.Now().UTC()}
	if in.Description != nil {
		g.Description = *in.Description
	}
	if in.Members != nil {
		g.Members = dedupeSorted(*in.Members)
	}
	g.Members = dedupeSorted(append(g.Members, in.Add...))
	if err := a.d.Store.CreateGroup(g); err != nil {
		return err
	}
	a.audit(r, "group.create", g.Name, "members "+strings.Join(g.Members, ","))
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func dedupeSorted(xs []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	groups, err := a.d.Store.Groups()
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []store.Group{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": groups})
	return nil
}

func (a *API) showGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	g, err := a.d.Store.Group(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) updateGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	var in groupInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	name := r.PathValue("name")
	if in.Name != nil && *in.Name != name {
		return httpError(http.StatusBadRequest, "a group cannot be renamed")
	}
	g, removed, err := a.d.Store.UpdateGroup(name, time.Now(), func(g *store.Group) error {
		if in.Description != nil {
			g.Description = *in.Description
		}
		if in.Members != nil {
			g.Members = *in.Members
		}
		g.Members = append(g.Members, in.Add...)
		for _, m := range in.Remove {
			for i := 0; i < len(g.Members); i++ {
				if g.Members[i] == m {
					g.Members = append(g.Members[:i], g.Members[i+1:]...)
					i--
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.audit(r, "group.update", name, "members "+strings.Join(g.Members, ",")+removedText(removed))
	if len(removed) > 0 {
		a.notifyRevocations()
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func removedText(removed []string) string {
	if len(removed) == 0 {
		return ""
	}
	return "; removed " + strings.Join(removed, ",")
}

// ---- audit

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("user"), Action: q.Get("action"), Source: q.Get("host")}
	if f.Source != "" {
		// A hostname or the start of an id names the host's id; a host
		// since removed is still found by its id.
		if m, err := a.findMember(f.Source); err == nil {
			f.Source = m.ID
		} else if !isStatus(err, http.StatusNotFound) {
			return err
		}
	}
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t, err2 := time.Parse(time.RFC3339, s)
			if err2 != nil {
				return httpError(http.StatusBadRequest, "since %q: want a duration such as 1h or an RFC3339 time", s)
			}
			f.Since = t
		} else {
			f.Since = time.Now().Add(-d)
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return httpError(http.StatusBadRequest, "limit %q: want 1 to 10000", s)
		}
		f.Limit = n
	}
	events, err := a.d.Store.Audit(f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
	return nil
}
