package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Patch approval rules: a rule approves every catalog patch of at least
// its severity in a test office at once, and in other offices once the
// test office has been clean for some days.

// ruleRules file the API's errors beside the rule's fields. The reboot's
// comes before the window's, which its list of choices names; "office "
// comes last: the test office's errors say "test office" or "test_office".
var ruleRules = []rule{
	{"rule name", "name"}, {"min_severity", "min_severity"}, {"test_office", "test_office"}, {"test office", "test_office"},
	{"after_days", "after_days"}, {`reboot "`, "reboot"}, {`window "`, "window"}, {"office ", "offices"},
}

func (c *Console) listRules(r *http.Request, s *session) ([]patchRule, error) {
	var out struct{ Rules []patchRule }
	if err := c.do(r, s, "GET", "/v1/patch-rules", nil, &out); err != nil {
		return nil, err
	}
	return out.Rules, nil
}

// findRule is the stored rule of that name; a 404 when there is none.
func (c *Console) findRule(r *http.Request, s *session, name string) (*patchRule, error) {
	var pr patchRule
	if err := c.do(r, s, "GET", "/v1/patch-rules/"+url.PathEscape(name), nil, &pr); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil, &apiError{Status: http.StatusNotFound, Msg: "There is no patch approval rule " + name + "."}
		}
		return nil, err
	}
	return &pr, nil
}

func (c *Console) patchRules(w http.ResponseWriter, r *http.Request, s *session) error {
	rules, err := c.listRules(r, s)
	if err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "patch_rules", "patches", "Patch approval rules", nil, rules)
}

// rulePage is the form of a patch rule: new (Rule nil) or stored.
type rulePage struct {
	Rule    *patchRule
	Offices []string // to choose from: every office, and any the form names
}

func (c *Console) renderRule(w http.ResponseWriter, r *http.Request, s *session, status int, f *form, stored *patchRule) error {
	offices, err := c.officeChoices(r, s, append([]string{f.Get("test_office")}, f.Values["offices"]...)...)
	if err != nil {
		return err
	}
	p := &rulePage{Rule: stored, Offices: offices}
	title := "New patch rule"
	if stored != nil {
		title = "Patch rule " + stored.Name
	}
	return c.render(w, r, s, status, "patch_rule", "patches", title, f, p)
}

func ruleForm(pr *patchRule) *form {
	f := newForm(nil)
	f.Values.Set("name", pr.Name)
	f.Values.Set("min_severity", pr.MinSeverity)
	f.Values.Set("test_office", pr.TestOffice)
	f.Values.Set("after_days", strconv.Itoa(pr.AfterDays))
	f.Values["offices"] = append([]string(nil), pr.Offices...)
	f.Values.Set("window", pr.Window)
	f.Values.Set("reboot", pr.Reboot)
	return f
}

func (c *Console) newRule(w http.ResponseWriter, r *http.Request, s *session) error {
	f := ruleForm(&patchRule{MinSeverity: "high", AfterDays: 3})
	return c.renderRule(w, r, s, http.StatusOK, f, nil)
}

func (c *Console) showRule(w http.ResponseWriter, r *http.Request, s *session) error {
	pr, err := c.findRule(r, s, r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.renderRule(w, r, s, http.StatusOK, ruleForm(pr), pr)
}

func (c *Console) createRule(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.saveRule(w, r, s, "")
}

func (c *Console) updateRule(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.saveRule(w, r, s, r.PathValue("name"))
}

// saveRule puts a rule: a new one (stored "") or a stored one, whole, as
// the form has it.
func (c *Console) saveRule(w http.ResponseWriter, r *http.Request, s *session, stored string) error {
	f := newForm(r.PostForm)
	name := stored
	var old *patchRule
	if stored != "" {
		var err error
		if old, err = c.findRule(r, s, stored); err != nil {
			return err
		}
	} else {
		name = strings.TrimSpace(f.Get("name"))
		f.Values.Set("name", name)
	}
	days, ok := 0, true
	if d := strings.TrimSpace(f.Get("after_days")); d != "" {
		days, ok = atoi(d)
	}
	if !ok {
		f.Errors["after_days"] = "after_days: give a whole number of days from 0 to 365."
	}
	switch {
	case name == "":
		f.Errors["name"] = "Give the rule a name: 1-63 lower-case letters, digits and dashes, such as high-first."
	case stored == "":
		// PUT replaces: a new rule must not overwrite one of the same name unseen.
		_, err := c.findRule(r, s, name)
		var ae *apiError
		switch {
		case err == nil:
			f.Errors["name"] = "A rule named " + name + " already exists: choose another name, or edit that one."
		case !errors.As(err, &ae) || ae.Status != http.StatusNotFound:
			return err
		}
	}
	if !f.Failed() {
		offices := f.Values["offices"]
		if offices == nil {
			offices = []string{}
		}
		body := map[string]any{"min_severity": f.Get("min_severity"), "test_office": f.Get("test_office"), "after_days": days,
			"offices": offices, "window": strings.TrimSpace(f.Get("window")), "reboot": f.Get("reboot")}
		err := c.do(r, s, "PUT", "/v1/patch-rules/"+url.PathEscape(name), body, nil)
		if err == nil {
			msg := "Rule " + name + " saved."
			if stored == "" {
				msg = "Rule " + name + " created; the coordinator evaluates it within the hour, or now with Evaluate now."
			}
			return done(w, r, s, "/ui/patch-rules/"+url.PathEscape(name), msg)
		}
		if err := f.fail(err, ruleRules); err != nil {
			return err
		}
	}
	return c.renderRule(w, r, s, f.status(), f, old)
}

func (c *Console) deleteRule(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.do(r, s, "DELETE", "/v1/patch-rules/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/patch-rules", "Rule "+name+" removed; the approvals it made stay.")
}

// evaluateRules runs the rules now rather than at the coordinator's next
// hourly pass.
func (c *Console) evaluateRules(w http.ResponseWriter, r *http.Request, s *session) error {
	var out struct{ Approved []approval }
	if err := c.do(r, s, "POST", "/v1/patch-rules/evaluate", nil, &out); err != nil {
		return err
	}
	if len(out.Approved) == 0 {
		return done(w, r, s, "/ui/patch-rules", "Rules evaluated: nothing new to approve.")
	}
	var made []string
	for _, ap := range out.Approved {
		made = append(made, ap.Patch+" for "+ap.Office)
	}
	return done(w, r, s, "/ui/patch-rules", "Rules evaluated: approved "+strings.Join(made, ", ")+".")
}
