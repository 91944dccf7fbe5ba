package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) error {
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return err
	}
	var ags struct{ Agents []agent }
	if err := c.do(r, s, "GET", "/v1/agents", nil, &ags); err != nil {
		return err
	}
	type failure struct {
		Agent, Hostname, Office, Item, Message string
	}
	d := struct {
		Offices                                      []office
		Agents, Relays, Online, Roaming, Offline, OK int
		Failed                                       []failure
		Pending                                      int
		// Reboot counts the agents whose change waits for a reboot.
		Reboot int
		// CA is the coordinator CA's current certificate, when known.
		CA *struct {
			NotAfter time.Time `json:"not_after"`
			Members  struct {
				Earlier int `json:"earlier"`
			} `json:"members"`
		}
	}{Offices: offs.Offices}
	// The CA's end, and who has yet to learn its renewed certificate; a
	// coordinator that does not say is shown without it.
	if err := c.do(r, s, "GET", "/v1/ca", nil, &d.CA); err != nil {
		d.CA = nil
	}
	for _, a := range ags.Agents {
		if a.Role == "relay" {
			d.Relays++
			continue
		}
		d.Agents++
		switch {
		case a.Roaming:
			d.Roaming++
		case a.Connected:
			d.Online++
		default:
			d.Offline++
		}
		if a.Compliant {
			d.OK++
		}
		if a.Reboot != nil {
			d.Reboot++
		}
		for _, it := range a.Items {
			switch it.Status {
			case "failed":
				d.Failed = append(d.Failed, failure{a.ID, a.Hostname, a.Office, it.ID, it.Message})
			case "pending":
				d.Pending++
			}
		}
	}
	return c.render(w, r, s, http.StatusOK, "dashboard", "dashboard", "Dashboard", nil, d)
}

// ---- offices

func (c *Console) offices(w http.ResponseWriter, r *http.Request, s *session) error {
	var out struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &out); err != nil {
		return err
	}
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	var shown []office
	for _, o := range out.Offices {
		if q == "" || strings.Contains(strings.ToLower(o.Name+" "+o.Description+" "+o.Location+" "+strings.Join(o.Subnets, " ")), q) {
			shown = append(shown, o)
		}
	}
	sort.Slice(shown, func(i, j int) bool { return shown[i].Name < shown[j].Name })
	return c.render(w, r, s, http.StatusOK, "offices", "offices", "Offices", newForm(r.URL.Query()),
		map[string]any{"Offices": shown, "Total": len(out.Offices)})
}

// officeRules file the API's office errors. The distribution server's and
// plain HTTP's come first: their messages also speak of relays and offices.
var officeRules = []rule{
	{"needs distribution_server", "distribution_server"}, {`distribution_server "`, "distribution_server"},
	{"is plain http, which office", "allow_plain_http"},
	{"office name", "name"}, {"name is required", "name"}, {"already exists", "name"}, {"renamed", "name"},
	{"description", "description"}, {"location", "location"},
	{"mode relay needs", "relays"}, {"relay", "relays"}, {"mode", "mode"},
	{"time_zone", "time_zone"}, {"checkin_interval", "checkin_interval"}, {"duration", "checkin_interval"},
	{"egress", "egress"}, {"subnet", "subnets"},
}

// officeBody is the Office of the form: every field, as the API names it.
// The check-in interval travels as typed; the API says what is wrong.
func officeBody(f *form, create bool) map[string]any {
	b := map[string]any{
		"description": f.Get("description"),
		"location":    f.Get("location"),
		"mode":        f.Get("mode"),
		"relays":      list(f.Get("relays")),
		"time_zone":   strings.TrimSpace(f.Get("time_zone")),
		"subnets":     list(f.Get("subnets")),
		"egress":      list(f.Get("egress")),
		// An unticked checkbox is absent from the post: false, which is
		// right because the edit form starts ticked when the office allows it.
		"allow_plain_http":    f.Checked("allow_plain_http"),
		"distribution_server": strings.TrimSpace(f.Get("distribution_server")),
	}
	if create {
		b["name"] = strings.TrimSpace(f.Get("name"))
	}
	if iv := strings.TrimSpace(f.Get("checkin_interval")); iv != "" {
		b["checkin_interval"] = iv
	}
	return b
}

func officeForm(o office) *form {
	v := url.Values{}
	v.Set("name", o.Name)
	v.Set("description", o.Description)
	v.Set("location", o.Location)
	v.Set("mode", o.Mode)
	v.Set("relays", strings.Join(o.Relays, "\n"))
	v.Set("checkin_interval", o.CheckinInterval)
	v.Set("time_zone", o.TimeZone)
	v.Set("subnets", strings.Join(o.Subnets, "\n"))
	v.Set("egress", strings.Join(o.Egress, "\n"))
	v.Set("distribution_server", o.DistributionServer)
	if o.AllowPlainHTTP {
		v.Set("allow_plain_http", "on")
	}
	return newForm(v)
}

func (c *Console) newOffice(w http.ResponseWriter, r *http.Request, s *session) error {
	f := officeForm(office{Mode: "direct", CheckinInterval: "2m", TimeZone: "UTC"})
	return c.render(w, r, s, http.StatusOK, "office_new", "offices", "Add an office", f, nil)
}

func (c *Console) createOffice(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	var o office
	if err := c.do(r, s, "POST", "/v1/offices", officeBody(f, true), &o); err != nil {
		if err := f.fail(err, officeRules); err != nil {
			return err
		}
		return c.render(w, r, s, f.status(), "office_new", "offices", "Add an office", f, nil)
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(o.Name), "Office "+o.Name+" added.")
}

// officePage is an office with its computers, tokens, agents and
// compliance, and the forms that change them.
type officePage struct {
	Office     office
	Computers  []computer
	Tokens     []enrollToken
	Agents     []agent
	Offices    []office // where its computers may move when it is removed
	Compliance compliance
	NewToken   *enrollToken
	Computer   *form // add computers
	Delete     *form // remove the office
	Token      *form // create an enrollment token
}

func (c *Console) officePage(r *http.Request, s *session, name string) (*officePage, error) {
	p := &officePage{Computer: newForm(nil), Delete: newForm(nil), Token: newForm(nil)}
	p.Token.Values.Set("uses", "10")
	p.Token.Values.Set("ttl", "24h")
	p.Token.Values.Set("role", "agent")
	esc := url.PathEscape(name)
	if err := c.do(r, s, "GET", "/v1/offices/"+esc, nil, &p.Office); err != nil {
		return nil, err
	}
	var cs struct{ Computers []computer }
	if err := c.do(r, s, "GET", "/v1/offices/"+esc+"/computers", nil, &cs); err != nil {
		return nil, err
	}
	p.Computers = cs.Computers
	var ts struct{ Tokens []enrollToken }
	if err := c.do(r, s, "GET", "/v1/offices/"+esc+"/tokens", nil, &ts); err != nil {
		return nil, err
	}
	p.Tokens = ts.Tokens
	var ags struct{ Agents []agent }
	if err := c.do(r, s, "GET", "/v1/agents?office="+url.QueryEscape(name), nil, &ags); err != nil {
		return nil, err
	}
	p.Agents = ags.Agents
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return nil, err
	}
	for _, o := range offs.Offices {
		if o.Name != name {
			p.Offices = append(p.Offices, o)
		}
	}
	if err := c.do(r, s, "GET", "/v1/offices/"+esc+"/compliance", nil, &p.Compliance); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Console) showOffice(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := c.officePage(r, s, r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "office", "offices", "Office "+p.Office.Name, officeForm(p.Office), p)
}

// officeAgain shows the office page again after a failed form, with
// that form's input and errors.
func (c *Console) officeAgain(w http.ResponseWriter, r *http.Request, s *session, edit *form, set func(*officePage)) error {
	p, err := c.officePage(r, s, r.PathValue("name"))
	if err != nil {
		return err
	}
	if edit == nil {
		edit = officeForm(p.Office)
	}
	if set != nil {
		set(p)
	}
	status := http.StatusUnprocessableEntity
	return c.render(w, r, s, status, "office", "offices", "Office "+p.Office.Name, edit, p)
}

func (c *Console) updateOffice(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	f.Values.Set("name", name)
	if err := c.do(r, s, "PATCH", "/v1/offices/"+url.PathEscape(name), officeBody(f, false), nil); err != nil {
		if err := f.fail(err, officeRules); err != nil {
			return err
		}
		return c.officeAgain(w, r, s, f, nil)
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name), "Office "+name+" saved.")
}

func (c *Console) addComputers(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	hosts := list(strings.ReplaceAll(f.Get("hostnames"), " ", ","))
	if len(hosts) == 0 {
		f.Errors["hostnames"] = "Name at least one computer, e.g. pc-17 or pc-17.corp.example."
		return c.officeAgain(w, r, s, nil, func(p *officePage) { p.Computer = f })
	}
	if err := c.do(r, s, "POST", "/v1/offices/"+url.PathEscape(name)+"/computers", map[string]any{"hostnames": hosts}, nil); err != nil {
		if err := f.fail(err, []rule{{"hostname", "hostnames"}, {"office", "hostnames"}}); err != nil {
			return err
		}
		return c.officeAgain(w, r, s, nil, func(p *officePage) { p.Computer = f })
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name)+"#computers", "Added "+strings.Join(hosts, ", ")+" to "+name+".")
}

func (c *Console) removeComputer(w http.ResponseWriter, r *http.Request, s *session) error {
	name, host := r.PathValue("name"), r.PostFormValue("hostname")
	if err := c.do(r, s, "DELETE", "/v1/offices/"+url.PathEscape(name)+"/computers/"+url.PathEscape(host), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name)+"#computers", "Removed "+host+" from the list of "+name+".")
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	body := map[string]any{"role": f.Get("role"), "ttl": strings.TrimSpace(f.Get("ttl"))}
	uses, ok := atoi(f.Get("uses"))
	if !ok {
		f.Errors["uses"] = "uses: give a whole number between 1 and 100000"
		return c.officeAgain(w, r, s, nil, func(p *officePage) { p.Token = f })
	}
	body["uses"] = uses
	var t enrollToken
	if err := c.do(r, s, "POST", "/v1/offices/"+url.PathEscape(name)+"/tokens", body, &t); err != nil {
		if err := f.fail(err, []rule{{"ttl", "ttl"}, {"duration", "ttl"}, {"uses", "uses"}, {"role", "role"}}); err != nil {
			return err
		}
		return c.officeAgain(w, r, s, nil, func(p *officePage) { p.Token = f })
	}
	// The secret is shown once, on this answer, and never stored here.
	p, err := c.officePage(r, s, name)
	if err != nil {
		return err
	}
	p.NewToken = &t
	return c.render(w, r, s, http.StatusCreated, "office", "offices", "Office "+name, officeForm(p.Office), p)
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, s *session) error {
	name, id := r.PathValue("name"), r.PathValue("id")
	var t enrollToken
	if err := c.do(r, s, "DELETE", "/v1/offices/"+url.PathEscape(name)+"/tokens/"+url.PathEscape(id), nil, &t); err != nil {
		return err
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name), fmt.Sprintf("Token %s revoked: nothing more enrols with it; the %d that enrolled with it stay.", t.ID, t.Used))
}

func (c *Console) deleteOffice(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	path := "/v1/offices/" + url.PathEscape(name)
	if to := f.Get("move_to"); to != "" {
		path += "?move_to=" + url.QueryEscape(to)
	}
	if err := c.do(r, s, "DELETE", path, nil, nil); err != nil {
		if err := f.fail(err, []rule{{"move_to", "move_to"}, {"computer", "move_to"}, {"member", "move_to"}, {"", "move_to"}}); err != nil {
			return err
		}
		return c.officeAgain(w, r, s, nil, func(p *officePage) { p.Delete = f })
	}
	return done(w, r, s, "/ui/offices", "Office "+name+" removed.")
}

// ---- agents

var agentStates = []string{"online", "offline", "roaming", "compliant", "noncompliant", "reboot", "upgrade-refused", "hung"}

// notSeenChoices are the agents page's "not seen for" filter: computers
// gone quiet, to remove the ones retired.
var notSeenChoices = []struct{ Value, Label string }{
	{"24h", "a day"}, {"168h", "a week"}, {"720h", "30 days"}, {"2160h", "90 days"},
}

func (c *Console) agents(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.URL.Query())
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return err
	}
	q := url.Values{}
	for _, k := range []string{"office", "state", "q", "not_seen", "version", "not_version"} {
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			q.Set(k, v)
		}
	}
	var ags struct{ Agents []agent }
	status := http.StatusOK
	if err := c.do(r, s, "GET", "/v1/agents?"+q.Encode(), nil, &ags); err != nil {
		if err := f.fail(err, []rule{{"state", "state"}, {"office", "office"}, {"q is", "q"}, {"not_seen", "not_seen"},
			{"not_version", "not_version"}, {"version", "version"}}); err != nil {
			return err
		}
		status = f.status()
	}
	// The API does not filter by label; the console does, as a policy's
	// labels: target matches.
	if l := strings.TrimSpace(f.Get("label")); l != "" {
		var kept []agent
		for _, a := range ags.Agents {
			if labelMatches(l, a.Labels) {
				kept = append(kept, a)
			}
		}
		ags.Agents = kept
	}
	return c.render(w, r, s, status, "agents", "agents", "Agents", f,
		map[string]any{"Agents": ags.Agents, "Offices": offs.Offices, "States": agentStates, "NotSeen": notSeenChoices})
}

type agentPage struct {
	Agent   agent
	Runs    []report
	Offices []office
	Move    *form
	// Labels is the form that adds and removes labels; LabelConflicts why
	// the API refused it.
	Labels         *form
	LabelConflicts []conflict
	// Effective is what the agent runs and which policy each item came
	// from (agents only); Reach where it takes direct sessions.
	Effective *effective
	Reach     *reach
}

func (c *Console) agentPage(r *http.Request, s *session) (*agentPage, error) {
	id := url.PathEscape(r.PathValue("id"))
	p := &agentPage{Move: newForm(nil), Labels: newForm(nil)}
	if err := c.do(r, s, "GET", "/v1/agents/"+id, nil, &p.Agent); err != nil {
		return nil, err
	}
	if p.Agent.Role == "agent" {
		var eff effective
		if err := c.do(r, s, "GET", "/v1/agents/"+id+"/policy", nil, &eff); err != nil {
			return nil, err
		}
		p.Effective = &eff
	}
	var rc reach
	err := c.do(r, s, "GET", "/v1/hosts/"+id+"/reach", nil, &rc)
	var ae *apiError
	switch {
	case err == nil:
		p.Reach = &rc
	case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusUnauthorized:
		// Shown without it: the rest of the page does not depend on it.
	default:
		return nil, err
	}
	var runs struct{ Runs []report }
	if err := c.do(r, s, "GET", "/v1/agents/"+id+"/runs", nil, &runs); err != nil {
		return nil, err
	}
	p.Runs = runs.Runs
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return nil, err
	}
	p.Offices = offs.Offices
	p.Move.Values.Set("office", p.Agent.Home)
	return p, nil
}

func (c *Console) showAgent(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := c.agentPage(r, s)
	if err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "agent", "agents", "Agent "+p.Agent.Hostname, nil, p)
}

func (c *Console) moveAgent(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	id := r.PathValue("id")
	if err := c.do(r, s, "POST", "/v1/agents/"+url.PathEscape(id)+"/move", map[string]string{"office": f.Get("office")}, nil); err != nil {
		if err := f.fail(err, []rule{{"office", "office"}}); err != nil {
			return err
		}
		p, err := c.agentPage(r, s)
		if err != nil {
			return err
		}
		p.Move = f
		return c.render(w, r, s, f.status(), "agent", "agents", "Agent "+p.Agent.Hostname, nil, p)
	}
	return done(w, r, s, "/ui/agents/"+url.PathEscape(id), "Home office set to "+f.Get("office")+".")
}

func (c *Console) deleteAgent(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	var a agent
	if err := c.do(r, s, "GET", "/v1/agents/"+url.PathEscape(id), nil, &a); err != nil {
		return err
	}
	if err := c.do(r, s, "DELETE", "/v1/agents/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/agents?office="+url.QueryEscape(a.Office),
		a.Role+" "+a.Hostname+" removed: its certificate opens no connection, and the gossip key of "+a.Office+" is being rotated.")
}

func (c *Console) rotateKey(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.do(r, s, "POST", "/v1/offices/"+url.PathEscape(name)+"/gossip-key/rotate", nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name), "Gossip key rotation of "+name+" started; it takes a few check-in intervals.")
}
