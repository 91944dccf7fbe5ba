package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// Rights by name, as the API and the CLI spell them.
var rightNames = map[string]wire.Right{
	"view": wire.Right_RIGHT_VIEW, "control": wire.Right_RIGHT_CONTROL, "command": wire.Right_RIGHT_COMMAND,
	"files": wire.Right_RIGHT_FILES, "manage": wire.Right_RIGHT_MANAGE,
}

const maxGrants = 1000

func validateGrants(grants []store.Grant) error {
	if len(grants) > maxGrants {
		return httpError(http.StatusBadRequest, "at most %d grants per list", maxGrants)
	}
	for i, g := range grants {
		kind, name, ok := strings.Cut(g.Subject, ":")
		if !ok || (kind != "user" && kind != "group") || !auth.ValidName(name) {
			return httpError(http.StatusBadRequest, "grant %d: subject %q: want user:NAME or group:NAME", i+1, g.Subject)
		}
		if len(g.Rights) == 0 {
			return httpError(http.StatusBadRequest, "grant %d (%s): name at least one right: view, control, command, files, manage", i+1, g.Subject)
		}
		for _, r := range g.Rights {
			if _, ok := rightNames[r]; !ok {
				return httpError(http.StatusBadRequest, "grant %d (%s): right %q: want view, control, command, files or manage", i+1, g.Subject, r)
			}
		}
	}
	return nil
}

func grantsToWire(host string, grants []store.Grant) *wire.HostPermissions {
	hp := &wire.HostPermissions{Host: host}
	for _, g := range grants {
		wg := &wire.Grant{Subject: g.Subject, Deny: g.Deny}
		for _, r := range g.Rights {
			wg.Rights = append(wg.Rights, rightNames[r])
		}
		hp.Grants = append(hp.Grants, wg)
	}
	return hp
}

// withAccess adds what hosts need to decide technician access to a policy
// about to be signed: the office's and its hosts' permission lists, the
// token keys, and who may not use break-glass.
func (a *API) withAccess(p *wire.Policy) *wire.Policy {
	if a.d.Auth == nil {
		return p
	}
	if err := a.fillAccess(p); err != nil {
		// A policy without lists allows nobody, which is the safe side.
		a.log.Error("add permission lists to policy", "office", p.GetOffice(), "err", err)
		p.Permissions = nil
	}
	return p
}

func (a *API) fillAccess(p *wire.Policy) error {
	office := p.GetOffice()
	p.TokenKeys = a.d.Auth.TokenKeys()
	grants, err := a.d.Store.Permissions(store.OfficeScope(office))
	if err != nil {
		return err
	}
	p.Permissions = nil
	if len(grants) > 0 {
		p.Permissions = append(p.Permissions, grantsToWire("", grants))
	}
	members, err := a.d.Store.Members(office)
	if err != nil {
		return err
	}
	for _, m := range members {
		grants, err := a.d.Store.Permissions(store.HostScope(m.ID))
		if err != nil {
			return err
		}
		if len(grants) > 0 {
			p.Permissions = append(p.Permissions, grantsToWire(m.ID, grants))
		}
	}
	users, err := a.d.Store.Users()
	if err != nil {
		return err
	}
	p.ForceServerSecurityUsers = nil
	for _, u := range users {
		if u.ForceServerSecurity {
			p.ForceServerSecurityUsers = append(p.ForceServerSecurityUsers, u.Name)
		}
	}
	return nil
}

// resign issues the office's next revision with its current policies and
// the current access lists, and tells its connected members.
func (a *API) resign(office string) (uint64, error) { return a.publish(office) }

// resignAll re-signs every office, for changes every host must see.
func (a *API) resignAll() {
	offices, err := a.d.Store.Offices()
	if err != nil {
		a.log.Error("re-sign policies", "err", err)
		return
	}
	for _, o := range offices {
		if _, err := a.resign(o.Name); err != nil {
			a.log.Error("re-sign policy", "office", o.Name, "err", err)
		}
	}
}

type permissionsInput struct {
	Grants []store.Grant `json:"grants"`
	// ETag, when given, is the etag of the list the change was made to
	// (as the If-Match header): the list is replaced only if it is still
	// that one, else 409.
	ETag string `json:"etag"`
}

type permissionsView struct {
	Host     string        `json:"host,omitempty"`
	Office   string        `json:"office"`
	Grants   []store.Grant `json:"grants"`
	Revision uint64        `json:"revision,omitempty"`
	// ETag is the entity tag of Grants (also the ETag header): send it
	// back as If-Match to change the list only if nobody else did since.
	ETag string `json:"etag"`
	// OfficeGrants apply to the host too (host view only).
	OfficeGrants *[]store.Grant `json:"office_grants,omitempty"`
	// Warnings about a change (set only): subjects that do not exist yet.
	Warnings []string `json:"warnings,omitempty"`
}

func nonNil(g []store.Grant) []store.Grant {
	if g == nil {
		return []store.Grant{}
	}
	return g
}

func (a *API) showHostPermissions(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return a.hideFromManagers(r, true, "host "+r.PathValue("id"), err)
	}
	if err := a.mayManage(r, homeOf(m), m, true, "host "+r.PathValue("id")); err != nil {
		return err
	}
	grants, err := a.d.Store.Permissions(store.HostScope(m.ID))
	if err != nil {
		return err
	}
	view := permissionsView{Host: m.ID, Office: m.Office, Grants: nonNil(grants)}
	// The list of the office the host is in now goes with it, to those who
	// may read that list: a visiting laptop's home manager is not a
	// manager of the office it visits.
	if a.mayManage(r, m.Office, nil, true, "office "+m.Office) == nil {
		office, err := a.d.Store.Permissions(store.OfficeScope(m.Office))
		if err != nil {
			return err
		}
		office = nonNil(office)
		view.OfficeGrants = &office
	}
	writeJSON(w, http.StatusOK, withETag(w, view))
	return nil
}

// withETag sets the view's etag, and the ETag header, from its grants.
func withETag(w http.ResponseWriter, v permissionsView) permissionsView {
	v.ETag = store.PermissionsTag(v.Grants)
	w.Header().Set("ETag", `"`+v.ETag+`"`)
	return v
}

// ifMatch reads which lists a change may replace: the entity tags of the
// If-Match header (quoted as sent back from ETag, or bare) and the etag
// of the body. None means any list (a change without them replaces the
// list whatever it is, as before there were tags), and so does "*". A
// weak tag (W/"...") never matches: the tag is a strong one.
func ifMatch(r *http.Request, body string) ([]string, error) {
	var tags []string
	star := false
	for _, h := range r.Header.Values("If-Match") {
		for _, t := range strings.Split(h, ",") {
			t = strings.TrimSpace(t)
			switch {
			case t == "":
			case t == "*":
				star = true
			case strings.HasPrefix(t, "W/"):
				tags = append(tags, t)
			default:
				tags = append(tags, strings.Trim(t, `"`))
			}
		}
	}
	if body != "" {
		if (star || len(tags) > 0) && !(len(tags) == 1 && tags[0] == body) {
			return nil, httpError(http.StatusBadRequest, "the If-Match header and the body's etag %q differ: give one of them", body)
		}
		return []string{body}, nil
	}
	if star {
		return nil, nil
	}
	return tags, nil
}

func (a *API) setHostPermissions(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return a.hideFromManagers(r, false, "host "+r.PathValue("id"), err)
	}
	if err := a.mayManage(r, homeOf(m), m, false, "host "+r.PathValue("id")); err != nil {
		return err
	}
	return a.setPermissions(w, r, store.HostScope(m.ID), "host "+m.ID, m.Office, managerOf(r, homeOf(m), m.ID), permissionsView{Host: m.ID, Office: m.Office})
}

// managerOf is who changes the list of office (and of host, a member id,
// unless empty) by the manage right: nil for a caller whose API role lets
// it change every list.
func managerOf(r *http.Request, office, host string) *store.Manager {
	if hasListRole(r, false) {
		return nil
	}
	var user string
	if p := PrincipalFrom(r.Context()); p != nil {
		user = p.User
	}
	return &store.Manager{User: user, Office: office, Host: host}
}

// setPermissions replaces the grants of one scope (an office or a host),
// records it, and re-signs the office's policy so hosts learn of it. by,
// unless nil, must still have the manage right when the list is written.
func (a *API) setPermissions(w http.ResponseWriter, r *http.Request, scope, what, office string, by *store.Manager, view permissionsView) error {
	var in permissionsInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := validateGrants(in.Grants); err != nil {
		return err
	}
	ifTags, err := ifMatch(r, in.ETag)
	if err != nil {
		return err
	}
	// A grant to a name nobody has yet is kept (it takes effect once the
	// user or group is made), but said: it is most often a typo.
	for _, g := range in.Grants {
		kind, name, _ := strings.Cut(g.Subject, ":")
		var err error
		if kind == "user" {
			_, err = a.d.Store.User(name)
		} else {
			_, err = a.d.Store.Group(name)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			view.Warnings = append(view.Warnings, fmt.Sprintf("there is no %s %s yet: this grant applies once there is (outpost %s list)", kind, name, kind))
		case err != nil:
			return err
		}
	}
	if _, err := a.d.Store.SetPermissionsAs(scope, in.Grants, ifTags, by); err != nil {
		if errors.Is(err, store.ErrNotManager) {
			return managersOnly(false, what)
		}
		var ce *store.PermissionsChangedError
		if errors.As(err, &ce) {
			w.Header().Set("ETag", `"`+ce.Current+`"`)
			return httpError(http.StatusConflict, "the permission list of %s changed since it was read (it was %s, it is %s now): read it again, make the change to what it is now and send that with the new etag", what, strings.Join(ifTags, ", "), ce.Current)
		}
		return err
	}
	a.audit(r, "permissions.set", what, grantsText(in.Grants))
	rev, err := a.resign(office)
	if err != nil {
		return err
	}
	view.Grants, view.Revision = nonNil(in.Grants), rev
	writeJSON(w, http.StatusOK, withETag(w, view))
	return nil
}

func (a *API) showOfficePermissions(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	o, err := a.d.Store.Office(r.PathValue("name"))
	if err != nil {
		return a.hideFromManagers(r, true, "office "+r.PathValue("name"), err)
	}
	if err := a.mayManage(r, o.Name, nil, true, "office "+o.Name); err != nil {
		return err
	}
	grants, err := a.d.Store.Permissions(store.OfficeScope(o.Name))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, withETag(w, permissionsView{Office: o.Name, Grants: nonNil(grants)}))
	return nil
}

func (a *API) setOfficePermissions(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	o, err := a.d.Store.Office(r.PathValue("name"))
	if err != nil {
		return a.hideFromManagers(r, false, "office "+r.PathValue("name"), err)
	}
	if err := a.mayManage(r, o.Name, nil, false, "office "+o.Name); err != nil {
		return err
	}
	return a.setPermissions(w, r, store.OfficeScope(o.Name), "office "+o.Name, o.Name, managerOf(r, o.Name, ""), permissionsView{Office: o.Name})
}

func grantsText(grants []store.Grant) string {
	var parts []string
	for _, g := range grants {
		verb := "allow"
		if g.Deny {
			verb = "deny"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", verb, g.Subject, strings.Join(g.Rights, ",")))
	}
	if len(parts) == 0 {
		return "cleared"
	}
	return strings.Join(parts, "; ")
}

// The manage right delegates the permission lists of an office, or of a
// host, to the users and groups it is granted to: whoever has it there
// (from the office's list, or for a host its home office's and its own:
// deny wins) may read and change that list without an API role. Admins
// change every list and read-only users and above read them.
//
// A host's list goes with the host wherever it is placed, so it belongs to
// the host's home office, not to the office it visits: a branch's manager
// must not give themselves rights on a laptop that visits the branch and
// keep them when it goes home.

// homeOf is the office whose manage right covers m's own list.
func homeOf(m *store.Member) string {
	if m.Home != "" {
		return m.Home
	}
	return m.Office
}

// hasListRole tells whether the request's principal may read (read) or
// change every permission list by its API role.
func hasListRole(r *http.Request, read bool) bool {
	p := PrincipalFrom(r.Context())
	if p == nil {
		return false
	}
	need := auth.RoleAdmin
	if read {
		need = auth.RoleReadOnly
	}
	return auth.RoleRank(p.Role) >= auth.RoleRank(need)
}

// mayManage answers nil when the request's principal may read (read) or
// change the permission list of office (host nil) or of host, in office.
func (a *API) mayManage(r *http.Request, office string, host *store.Member, read bool, what string) error {
	if hasListRole(r, read) {
		return nil
	}
	rights, err := a.rightsIn(PrincipalFrom(r.Context()), office, host)
	if err != nil {
		return err
	}
	if slices.Contains(rights, "manage") {
		return nil
	}
	return managersOnly(read, what)
}

func managersOnly(read bool, what string) error {
	verb, role := "changing", "admin"
	if read {
		verb, role = "reading", "read-only"
	}
	return httpError(http.StatusForbidden, "%s the permissions of %s needs the manage right there or the %s role: ask an admin", verb, what, role)
}

// hideFromManagers is err, the office or host not found, to whoever may
// read every list; others are told only that they may not, so that the
// call does not tell them which offices and hosts exist.
func (a *API) hideFromManagers(r *http.Request, read bool, what string, err error) error {
	if hasListRole(r, read) {
		return err
	}
	return managersOnly(read, what)
}
