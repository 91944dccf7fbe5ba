package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Endpoint scope in the console: named policies with their targets and
// priority, agent labels, and the effective policy of an agent. The API
// checks and refuses; the console composes what the user typed into the
// API's shapes and sets out the API's answer beside the fields.

// refusedConflicts tells whether err is the API refusing a change because
// policies would conflict, and returns the conflicts it listed.
func refusedConflicts(err error) ([]conflict, bool) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict && len(ae.Conflicts) > 0 {
		return ae.Conflicts, true
	}
	return nil, false
}

// ---- the policies page

func (c *Console) policies(w http.ResponseWriter, r *http.Request, s *session) error {
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return err
	}
	sort.Slice(offs.Offices, func(i, j int) bool { return offs.Offices[i].Name < offs.Offices[j].Name })
	var named struct{ Policies []namedPolicy }
	if err := c.do(r, s, "GET", "/v1/policies", nil, &named); err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "policies", "policies", "Policies", nil,
		map[string]any{"Offices": offs.Offices, "Named": named.Policies})
}

// ---- one named policy

// namedPage is the form of a named policy: new or stored.
type namedPage struct {
	yamlProblems
	New       bool
	Name      string
	Policy    *namedPolicy // as stored; nil when new
	Offices   []string     // the offices to tick: every office, and any typed
	Artifacts []artifact
	Conflicts []conflict
}

func (c *Console) namedPage(r *http.Request, s *session, f *form, name string) (*namedPage, error) {
	p := &namedPage{New: name == "", Name: name}
	if name != "" {
		var np namedPolicy
		if err := c.do(r, s, "GET", "/v1/policies/"+url.PathEscape(name), nil, &np); err != nil {
			return nil, err
		}
		p.Policy = &np
	}
	offices, err := c.officeChoices(r, s, f.Values["offices"]...)
	if err != nil {
		return nil, err
	}
	p.Offices = offices
	var arts struct{ Artifacts []artifact }
	if err := c.do(r, s, "GET", "/v1/artifacts", nil, &arts); err != nil {
		return nil, err
	}
	p.Artifacts = arts.Artifacts
	return p, nil
}

func (c *Console) newNamedPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(nil)
	f.Values.Set("priority", "0")
	f.Values.Set("yaml", "items:\n")
	p, err := c.namedPage(r, s, f, "")
	if err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "named_policy", "policies", "New policy", f, p)
}

func (c *Console) showNamedPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	p, err := c.namedPage(r, s, newForm(nil), name)
	if err != nil {
		return err
	}
	f := newForm(nil)
	f.Values["offices"] = p.Policy.Targets.Offices
	f.Values.Set("agents", strings.Join(p.Policy.Targets.Agents, "\n"))
	f.Values.Set("labels", strings.Join(p.Policy.Targets.Labels, "\n"))
	f.Values.Set("priority", strconv.Itoa(p.Policy.Priority))
	f.Values.Set("yaml", policyBody(p.Policy.YAML))
	return c.render(w, r, s, http.StatusOK, "named_policy", "policies", "Policy "+name, f, p)
}

func (c *Console) createNamedPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.saveNamedPolicy(w, r, s, "")
}

func (c *Console) updateNamedPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.saveNamedPolicy(w, r, s, r.PathValue("name"))
}

// bodyKeys finds targets or priority written in the YAML itself: they
// belong in their fields, and the API would see them twice.
var bodyKeys = regexp.MustCompile(`(?m)^(targets|priority)\s*:`)

// saveNamedPolicy applies a named policy: a new one (stored "") or a
// stored one. The targets and priority of the form go before the YAML of
// the editor; the API's problems are set out against the field or the
// editor line they concern.
func (c *Console) saveNamedPolicy(w http.ResponseWriter, r *http.Request, s *session, stored string) error {
	f := newForm(r.PostForm)
	name := stored
	if name == "" {
		name = strings.TrimSpace(f.Get("name"))
		f.Values.Set("name", name)
	}
	body := strings.ReplaceAll(f.Get("yaml"), "\r\n", "\n")
	offices := f.Values["offices"]
	agents := list(strings.ReplaceAll(f.Get("agents"), " ", ","))
	labels := list(strings.ReplaceAll(f.Get("labels"), " ", ","))
	priority, hasPriority := 0, false
	if ps := strings.TrimSpace(f.Get("priority")); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil {
			f.Errors["priority"] = fmt.Sprintf("priority %q: give a whole number from -1000 to 1000 (higher wins among policies of the same level)", ps)
		}
		priority, hasPriority = n, true
	}
	switch {
	case name == "":
		f.Errors["name"] = "Give the policy a name: 1-63 lower-case letters, digits and dashes, such as kiosks."
	case stored == "":
		// A new policy must not replace one of the same name unseen.
		err := c.do(r, s, "GET", "/v1/policies/"+url.PathEscape(name), nil, nil)
		switch {
		case err == nil:
			f.Errors["name"] = "A policy named " + name + " already exists: choose another name, or edit that one."
		case errors.Is(err, errSignedOut):
			return err
		}
	}
	if bodyKeys.MatchString(body) {
		f.Errors["yaml"] = "Set the targets and the priority in the fields above, not in the YAML: the YAML holds items and defaults."
	}
	var conflicts []conflict
	var out namedPolicy
	var lines yamlProblems
	if !f.Failed() {
		doc, fields, header := composeNamed(offices, agents, labels, priority, hasPriority, body)
		err := c.do(r, s, "PUT", "/v1/policies/"+url.PathEscape(name), doc, &out)
		if err == nil {
			return done(w, r, s, "/ui/policies/"+url.PathEscape(name), savedText(name, stored == "", out.Published))
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusUnauthorized {
			return err
		}
		f.code = ae.Status
		if cs, ok := refusedConflicts(err); ok {
			f.Top, conflicts = ae.Msg, cs
		} else if ae.Status == http.StatusBadRequest || ae.Status == http.StatusNotFound {
			lines.problems(body, fileProblems(f, ae.Msg, fields, header))
		} else {
			f.Top = ae.Msg
		}
	} else if f.Err("yaml") != "" {
		lines.problems(body, f.Err("yaml"))
	}
	p, err := c.namedPage(r, s, f, stored)
	if err != nil {
		return err
	}
	p.yamlProblems, p.Conflicts = lines, conflicts
	title := "New policy"
	if stored != "" {
		title = "Policy " + stored
	}
	return c.render(w, r, s, f.status(), "named_policy", "policies", title, f, p)
}

// composeNamed writes the named policy the API takes: the targets and the
// priority of the form, one line each so that a problem the API finds on a
// line names its field, then the YAML of the editor. fields maps those
// lines to the fields; header is how many there are.
func composeNamed(offices, agents, labels []string, priority int, hasPriority bool, body string) (string, map[int]string, int) {
	var b strings.Builder
	fields := map[int]string{1: "targets"}
	line := 1
	b.WriteString("targets:")
	if len(offices)+len(agents)+len(labels) == 0 {
		b.WriteString(" {}")
	}
	b.WriteString("\n")
	for _, t := range []struct {
		field string
		list  []string
	}{{"offices", offices}, {"agents", agents}, {"labels", labels}} {
		if len(t.list) == 0 {
			continue
		}
		line++
		fields[line] = t.field
		fmt.Fprintf(&b, "  %s: %s\n", t.field, flowList(t.list))
	}
	if hasPriority {
		line++
		fields[line] = "priority"
		fmt.Fprintf(&b, "priority: %d\n", priority)
	}
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return b.String() + body, fields, line
}

// flowList is a YAML flow sequence of quoted strings: JSON's string
// escapes are YAML's, so nothing typed can open another key.
func flowList(xs []string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(xs)
	return strings.TrimSpace(b.String())
}

// fileProblems files the API's problems with a composed policy: those on
// the lines of the targets and priority beside their fields, those that
// name a field by what they say beside it, and the rest against the
// editor's lines (returned, numbered as the editor numbers them).
func fileProblems(f *form, msg string, fields map[int]string, header int) string {
	add := func(field, m string) {
		if f.Errors[field] != "" {
			f.Errors[field] += "\n"
		}
		f.Errors[field] += m
	}
	var editor []string
	for _, l := range strings.Split(msg, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if m := problemLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if n > header {
				editor = append(editor, fmt.Sprintf("line %d: %s", n-header, m[2]))
				continue
			}
			field := fields[n]
			if field == "" {
				field = "targets"
			}
			add(field, m[2])
			continue
		}
		low := strings.ToLower(l)
		switch {
		case strings.Contains(low, "policy name"):
			add("name", l)
		case strings.Contains(low, "targeted by policy") && strings.HasPrefix(low, "office"):
			add("offices", l)
		case strings.Contains(low, "targeted by policy") && strings.HasPrefix(low, "agent"):
			add("agents", l)
		case strings.Contains(low, "targets"):
			add("targets", l)
		default:
			editor = append(editor, l)
		}
	}
	if len(editor) > 0 {
		f.Errors["yaml"] = strings.Join(editor, "\n")
	}
	return strings.Join(editor, "\n")
}

func savedText(name string, created bool, published map[string]uint64) string {
	verb := "saved"
	if created {
		verb = "created"
	}
	if len(published) == 0 {
		return "Policy " + name + " " + verb + "; it applies to no computer of any office yet."
	}
	var revs []string
	for o, rev := range published {
		revs = append(revs, fmt.Sprintf("%s revision %d", o, rev))
	}
	sort.Strings(revs)
	return "Policy " + name + " " + verb + "; signed " + strings.Join(revs, ", ") + "."
}

// policyBody is a stored named policy without its targets and priority,
// which the form shows in their own fields: the lines of those keys are
// cut out, keeping everything else as it was written. A document that is
// not laid out one key a line is written out again without them.
func policyBody(src string) string {
	var doc yaml.Node
	if yaml.Unmarshal([]byte(src), &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return src
	}
	m := doc.Content[0]
	lines := strings.Split(src, "\n")
	byLine := map[int]bool{}
	block := m.Style&yaml.FlowStyle == 0
	for i := 0; i < len(m.Content); i += 2 {
		k := m.Content[i]
		if byLine[k.Line] || k.Column != 1 {
			block = false
		}
		byLine[k.Line] = true
	}
	if !block {
		var keep []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if v := m.Content[i].Value; v != "targets" && v != "priority" {
				keep = append(keep, m.Content[i], m.Content[i+1])
			}
		}
		m.Content, m.Style = keep, 0
		out, err := yaml.Marshal(m)
		if err != nil {
			return src
		}
		return string(out)
	}
	drop := map[int]bool{}
	for i := 0; i < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Value != "targets" && k.Value != "priority" {
			continue
		}
		end := len(lines)
		if i+2 < len(m.Content) {
			end = m.Content[i+2].Line - 1
		}
		// Blank lines and comments before the next key are the next key's.
		for end > k.Line && (strings.TrimSpace(lines[end-1]) == "" || strings.HasPrefix(lines[end-1], "#")) {
			end--
		}
		for l := k.Line; l <= end; l++ {
			drop[l] = true
		}
	}
	var out []string
	for i, l := range lines {
		if !drop[i+1] {
			out = append(out, l)
		}
	}
	return strings.TrimLeft(strings.Join(out, "\n"), "\n")
}

func (c *Console) deleteNamedPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.do(r, s, "DELETE", "/v1/policies/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/policies", "Policy "+name+" removed; the offices of the computers it applied to get a new revision.")
}

// ---- labels

// labelList is an agent's labels as the user types them: key=value, or
// key for a plain label; sorted.
func labelList(labels map[string]string) []string {
	out := []string{}
	for k, v := range labels {
		if v != "" {
			k += "=" + v
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// labelMatches tells whether a label filter ("key" or "key=value")
// matches labels, as a policy's labels: target does.
func labelMatches(filter string, labels map[string]string) bool {
	k, v, hasValue := strings.Cut(filter, "=")
	have, ok := labels[k]
	return ok && (!hasValue || have == v)
}

// setLabels adds labels (key=value or key; "key-" removes, as in the
// CLI) or removes one (the remove button of a label).
func (c *Console) setLabels(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	id := r.PathValue("id")
	set, remove := map[string]string{}, []string{}
	if k := strings.TrimSpace(f.Get("remove")); k != "" {
		remove = append(remove, k)
	}
	for _, e := range list(strings.ReplaceAll(f.Get("labels"), " ", ",")) {
		if k, ok := strings.CutSuffix(e, "-"); ok && !strings.Contains(e, "=") {
			remove = append(remove, k)
			continue
		}
		k, v, _ := strings.Cut(e, "=")
		set[k] = v
	}
	var conflicts []conflict
	if len(set)+len(remove) == 0 {
		f.Errors["labels"] = "Type a label: key=value such as floor=3, or a plain key such as kiosk."
	} else {
		var a agent
		err := c.do(r, s, "PATCH", "/v1/agents/"+url.PathEscape(id)+"/labels", map[string]any{"set": set, "remove": remove}, &a)
		if err == nil {
			msg := "Labels of " + a.Hostname + ": " + strings.Join(labelList(a.Labels), " ") + "."
			if len(a.Labels) == 0 {
				msg = a.Hostname + " has no labels now."
			}
			return done(w, r, s, "/ui/agents/"+url.PathEscape(id)+"#labels", msg)
		}
		if cs, ok := refusedConflicts(err); ok {
			var ae *apiError
			errors.As(err, &ae)
			f.Top, f.code, conflicts = ae.Msg, ae.Status, cs
		} else if err := f.fail(err, []rule{{"label", "labels"}}); err != nil {
			return err
		}
	}
	p, err := c.agentPage(r, s)
	if err != nil {
		return err
	}
	p.Labels, p.LabelConflicts = f, conflicts
	return c.render(w, r, s, f.status(), "agent", "agents", "Agent "+p.Agent.Hostname, nil, p)
}

// policyHref is where the console shows a policy an effective item or a
// conflict names: an office's own policy, the patches, or a named one.
func policyHref(name string) string {
	if o, ok := strings.CutPrefix(name, "office:"); ok {
		return "/ui/offices/" + url.PathEscape(o) + "/policy"
	}
	if name == "patches" {
		return "/ui/patches"
	}
	return "/ui/policies/" + url.PathEscape(name)
}

// officeChoices are the offices a form offers to tick, sorted: every
// office, and any the form names that no longer exists, so that saving
// does not drop it unseen (the API then says what is wrong).
func (c *Console) officeChoices(r *http.Request, s *session, named ...string) ([]string, error) {
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{"": true}
	for _, o := range offs.Offices {
		named = append(named, o.Name)
	}
	for _, o := range named {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out, nil
}
