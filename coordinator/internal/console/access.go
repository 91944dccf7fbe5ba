package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// ---- users

var userRules = []rule{
	{"yourself", "disabled"}, {"name", "name"}, {"already exists", "name"}, {"password", "password"}, {"role", "role"},
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	var out struct{ Users []user }
	if err := c.do(r, s, "GET", "/v1/users", nil, &out); err != nil {
		return err
	}
	if f == nil {
		f = newForm(nil)
		f.Values.Set("role", "")
	}
	return c.render(w, r, s, status, "users", "users", "Users", f, out.Users)
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.usersPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) createUser(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := strings.TrimSpace(f.Get("name"))
	body := map[string]any{"name": name, "role": f.Get("role"), "disabled": f.Checked("disabled"),
		"force_server_security": f.Checked("force_server_security")}
	if pw := f.Get("password"); pw != "" {
		body["password"] = pw
	}
	if err := c.do(r, s, "POST", "/v1/users", body, nil); err != nil {
		if err := f.fail(err, userRules); err != nil {
			return err
		}
		f.Values.Del("password")
		return c.usersPage(w, r, s, f.status(), f)
	}
	return done(w, r, s, "/ui/users/"+url.PathEscape(name), "User "+name+" added.")
}

func (c *Console) userPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	var u user
	if err := c.do(r, s, "GET", "/v1/users/"+url.PathEscape(r.PathValue("name")), nil, &u); err != nil {
		return err
	}
	if f == nil {
		f = newForm(nil)
		f.Values.Set("role", u.Role)
		if u.Disabled {
			f.Values.Set("disabled", "on")
		}
		if u.ForceServerSecurity {
			f.Values.Set("force_server_security", "on")
		}
	}
	return c.render(w, r, s, status, "user", "users", "User "+u.Name, f, u)
}

func (c *Console) showUser(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.userPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) updateUser(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	body := map[string]any{"role": f.Get("role"), "disabled": f.Checked("disabled"),
		"force_server_security": f.Checked("force_server_security")}
	if pw := f.Get("password"); pw != "" {
		body["password"] = pw
	}
	if f.Checked("unlock") {
		body["unlock"] = true
	}
	if err := c.do(r, s, "PATCH", "/v1/users/"+url.PathEscape(name), body, nil); err != nil {
		if err := f.fail(err, userRules); err != nil {
			return err
		}
		f.Values.Del("password")
		return c.userPage(w, r, s, f.status(), f)
	}
	return done(w, r, s, "/ui/users/"+url.PathEscape(name), "User "+name+" saved.")
}

func (c *Console) deleteUser(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.do(r, s, "DELETE", "/v1/users/"+url.PathEscape(name), nil, nil); err != nil {
		f := newForm(nil)
		if err := f.fail(err, []rule{{"", "delete"}}); err != nil {
			return err
		}
		return c.userPage(w, r, s, f.status(), mergeErrors(f, nil))
	}
	return done(w, r, s, "/ui/users", "User "+name+" removed; hosts were told first.")
}

// mergeErrors returns base (or a fresh form) carrying errs' errors.
func mergeErrors(errs *form, base *form) *form {
	if base == nil {
		base = newForm(nil)
	}
	for k, v := range errs.Errors {
		base.Errors[k] = v
	}
	if errs.Top != "" {
		base.Top = errs.Top
	}
	return base
}

// ---- groups

var groupRules = []rule{{"name", "name"}, {"already exists", "name"}, {"member", "members"}, {"user", "members"}, {"description", "description"}}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	var out struct{ Groups []group }
	if err := c.do(r, s, "GET", "/v1/groups", nil, &out); err != nil {
		return err
	}
	return c.render(w, r, s, status, "groups", "groups", "Groups", f, out.Groups)
}

func (c *Console) groups(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.groupsPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := strings.TrimSpace(f.Get("name"))
	body := map[string]any{"name": name, "description": f.Get("description"), "members": list(f.Get("members"))}
	if err := c.do(r, s, "POST", "/v1/groups", body, nil); err != nil {
		if err := f.fail(err, groupRules); err != nil {
			return err
		}
		return c.groupsPage(w, r, s, f.status(), f)
	}
	return done(w, r, s, "/ui/groups/"+url.PathEscape(name), "Group "+name+" added.")
}

func (c *Console) groupPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	var g group
	if err := c.do(r, s, "GET", "/v1/groups/"+url.PathEscape(r.PathValue("name")), nil, &g); err != nil {
		return err
	}
	if f == nil {
		f = newForm(nil)
		f.Values.Set("description", g.Description)
		f.Values.Set("members", strings.Join(g.Members, "\n"))
	}
	return c.render(w, r, s, status, "group", "groups", "Group "+g.Name, f, g)
}

func (c *Console) showGroup(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.groupPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) updateGroup(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	members := list(f.Get("members"))
	body := map[string]any{"description": f.Get("description"), "members": members}
	if err := c.do(r, s, "PATCH", "/v1/groups/"+url.PathEscape(name), body, nil); err != nil {
		if err := f.fail(err, groupRules); err != nil {
			return err
		}
		return c.groupPage(w, r, s, f.status(), f)
	}
	return done(w, r, s, "/ui/groups/"+url.PathEscape(name), "Group "+name+" saved.")
}

func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.do(r, s, "DELETE", "/v1/groups/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/groups", "Group "+name+" removed.")
}

// ---- host and office permissions

// grantText writes a grant as the CLI does: [deny:]SUBJECT=right,right.
func grantText(g grant) string {
	t := g.Subject + "=" + strings.Join(g.Rights, ",")
	if g.Deny {
		t = "deny:" + t
	}
	return t
}

// parseGrants reads one grant a line in grantText's form. It checks only
// the shape; the API checks subjects and rights.
func parseGrants(src string) ([]grant, error) {
	out := []grant{}
	for i, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		g := grant{}
		if rest, ok := strings.CutPrefix(line, "deny:"); ok {
			g.Deny, line = true, rest
		}
		subject, rights, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q: write SUBJECT=RIGHTS, e.g. group:berlin-techs=view,command", i+1, line)
		}
		g.Subject = strings.TrimSpace(subject)
		for _, r := range strings.Split(rights, ",") {
			if r = strings.TrimSpace(r); r != "" {
				g.Rights = append(g.Rights, r)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

type permsPage struct {
	Office string
	Host   string
	Agent  *agent
	Perms  permissions
	Action string
	// Changed: the list changed since the form was read; Perms is what
	// it is now, and the form keeps what the admin wrote.
	Changed bool
}

func (c *Console) permsPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	return c.permsPageChanged(w, r, s, status, f, false)
}

// permsPageChanged shows the permission list's form; changed says a save
// was refused because someone changed the list since the form was read.
func (c *Console) permsPageChanged(w http.ResponseWriter, r *http.Request, s *session, status int, f *form, changed bool) error {
	p := &permsPage{Office: r.PathValue("name"), Host: r.PathValue("id"), Changed: changed}
	var apiPath string
	if p.Host != "" {
		p.Agent = &agent{}
		if err := c.do(r, s, "GET", "/v1/agents/"+url.PathEscape(p.Host), nil, p.Agent); err != nil {
			return err
		}
		// The page may be opened by hostname, which the host chose and
		// another may take by the time the form is saved (and which may
		// read as a path): the form and links name the host by its id.
		p.Host = p.Agent.ID
		apiPath = "/v1/hosts/" + url.PathEscape(p.Host) + "/permissions"
		p.Action = "/ui/agents/" + url.PathEscape(p.Host) + "/permissions"
	} else {
		apiPath = "/v1/offices/" + url.PathEscape(p.Office) + "/permissions"
		p.Action = "/ui/offices/" + url.PathEscape(p.Office) + "/permissions"
	}
	if err := c.do(r, s, "GET", apiPath, nil, &p.Perms); err != nil {
		return err
	}
	if f == nil {
		var lines []string
		for _, g := range p.Perms.Grants {
			lines = append(lines, grantText(g))
		}
		f = newForm(nil)
		f.Values.Set("grants", strings.Join(lines, "\n"))
	}
	if f.Get("etag") == "" || changed {
		// The list the form's text is a change of: a save replaces it
		// only if nobody changed it since. After a refusal, the admin
		// has seen the list as it is now, and saving again replaces that.
		f.Values.Set("etag", p.Perms.ETag)
	}
	title, nav := "Permissions of office "+p.Office, "offices"
	if p.Host != "" {
		title, nav = "Permissions of "+p.Agent.Hostname, "agents"
	}
	return c.render(w, r, s, status, "permissions", nav, title, f, p)
}

func (c *Console) setPerms(w http.ResponseWriter, r *http.Request, s *session, apiPath, back string) error {
	f := newForm(r.PostForm)
	grants, err := parseGrants(f.Get("grants"))
	if err != nil {
		f.Errors["grants"] = err.Error()
		return c.permsPage(w, r, s, f.status(), f)
	}
	var out permissions
	if err := c.do(r, s, "PUT", apiPath, map[string]any{"grants": grants, "etag": f.Get("etag")}, &out); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.Contains(ae.Msg, "changed since it was read") {
			f.Errors["grants"] = "Someone changed this list after you opened it; nothing was saved. " +
				"The list as it is now is shown beside your text: change your text to keep their grants too, then save again."
			return c.permsPageChanged(w, r, s, http.StatusConflict, f, true)
		}
		if err := f.fail(err, []rule{{"", "grants"}}); err != nil {
			return err
		}
		return c.permsPage(w, r, s, f.status(), f)
	}
	msg := fmt.Sprintf("Permissions saved; hosts get them in policy revision %d.", out.Revision)
	for _, w := range out.Warnings {
		msg += " Note: " + w + "."
	}
	return done(w, r, s, back, msg)
}

func (c *Console) officePermissions(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.permsPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) setOfficePermissions(w http.ResponseWriter, r *http.Request, s *session) error {
	name := url.PathEscape(r.PathValue("name"))
	return c.setPerms(w, r, s, "/v1/offices/"+name+"/permissions", "/ui/offices/"+name+"/permissions")
}

func (c *Console) hostPermissions(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.permsPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) setHostPermissions(w http.ResponseWriter, r *http.Request, s *session) error {
	id := url.PathEscape(r.PathValue("id"))
	return c.setPerms(w, r, s, "/v1/hosts/"+id+"/permissions", "/ui/agents/"+id+"/permissions")
}

// ---- audit

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.URL.Query())
	if !f.Values.Has("since") && !f.Values.Has("limit") {
		f.Values.Set("since", "24h")
		f.Values.Set("limit", "100")
	}
	q := url.Values{}
	for _, k := range []string{"user", "action", "host", "since", "limit"} {
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			q.Set(k, v)
		}
	}
	var out struct{ Events []event }
	status := http.StatusOK
	if err := c.do(r, s, "GET", "/v1/audit?"+q.Encode(), nil, &out); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			return err // a refusal page, not the filters over nothing
		}
		if err := f.fail(err, []rule{{"since", "since"}, {"limit", "limit"}}); err != nil {
			return err
		}
		status = f.status()
	}
	// Newest first by when they happened, however late a host's records
	// arrived, and hosts by hostname where one names a host alone: as
	// outpost audit shows them.
	sort.SliceStable(out.Events, func(i, j int) bool { return out.Events[i].At.After(out.Events[j].At) })
	var ags struct{ Agents []agent }
	if len(out.Events) > 0 && c.do(r, s, "GET", "/v1/agents", nil, &ags) == nil {
		names, seen := map[string]string{}, map[string]int{}
		for _, a := range ags.Agents {
			seen[strings.ToLower(a.Hostname)]++
		}
		for _, a := range ags.Agents {
			if seen[strings.ToLower(a.Hostname)] == 1 {
				names[a.ID] = a.Hostname
			}
		}
		for i := range out.Events {
			ev := &out.Events[i]
			if kind, id, ok := strings.Cut(ev.Target, " "); ok && (kind == "host" || kind == "agent") && names[id] != "" {
				ev.Target = kind + " " + names[id]
			}
			if h := names[ev.Source]; h != "" {
				ev.Source = h
			}
		}
	}
	return c.render(w, r, s, status, "audit", "audit", "Audit log", f, out.Events)
}
