package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

func atoi(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	return n, err == nil
}

// ---- artifacts

func (c *Console) artifacts(w http.ResponseWriter, r *http.Request, s *session) error {
	var out struct{ Artifacts []artifact }
	if err := c.do(r, s, "GET", "/v1/artifacts", nil, &out); err != nil {
		return err
	}
	sort.Slice(out.Artifacts, func(i, j int) bool { return out.Artifacts[i].Uploaded.After(out.Artifacts[j].Uploaded) })
	return c.render(w, r, s, http.StatusOK, "artifacts", "artifacts", "Artifacts", nil, out.Artifacts)
}

// removeArtifact removes an artifact nothing names; the coordinator's
// refusal says what still does.
func (c *Console) removeArtifact(w http.ResponseWriter, r *http.Request, s *session) error {
	var out struct {
		Name string `json:"name"`
	}
	sha := r.PathValue("sha256")
	if err := c.do(r, s, "DELETE", "/v1/artifacts/"+url.PathEscape(sha), nil, &out); err != nil {
		return err
	}
	return done(w, r, s, "/ui/artifacts", "Removed "+cmp.Or(out.Name, "sha256 "+sha)+" from the file server.")
}

// uploadArtifact streams an upload through to POST /v1/artifacts: the
// bytes pass from the browser's request to the API (and on to the file
// server) as they arrive, never held whole. Two shapes: the page's script
// sends the file as the raw body (?name=, X-CSRF-Token, a known length,
// for the progress bar); without script the form posts multipart/form-data,
// whose csrf field comes before the file and is checked before a byte of
// the file is read.
func (c *Console) uploadArtifact(w http.ResponseWriter, r *http.Request, s *session) error {
	script := r.Header.Get("X-CSRF-Token") != ""
	fail := func(status int, field, msg string) error {
		if script {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			return json.NewEncoder(w).Encode(map[string]string{"error": msg, "field": field})
		}
		f := newForm(nil)
		f.Errors[field] = msg
		var out struct{ Artifacts []artifact }
		if err := c.do(r, s, "GET", "/v1/artifacts", nil, &out); err != nil {
			return err
		}
		return c.render(w, r, s, status, "artifacts", "artifacts", "Artifacts", f, out.Artifacts)
	}
	// The form's fields before the file must arrive within BodyWait
	// (ServeHTTP); the file then streams under the API's idle limit,
	// which it keeps on this connection.
	conn := http.NewResponseController(w)
	var body stream
	var name string
	var file *partReader
	if script {
		if !tokenEqual(r.Header.Get("X-CSRF-Token"), s.csrf) {
			http.Error(w, "refused: the page's security token is missing or stale; reload the page", http.StatusForbidden)
			return nil
		}
		name, body = r.URL.Query().Get("name"), stream{r.Body, r.ContentLength, conn}
	} else {
		mr, err := r.MultipartReader()
		if err != nil {
			return fail(http.StatusBadRequest, "file", "Choose a file to upload.")
		}
		part, err := mr.NextPart()
		if timedOut(err) {
			c.formTooSlow(w)
			return nil
		}
		if err != nil || part.FormName() != "csrf" {
			http.Error(w, "refused: the form's security token is missing", http.StatusForbidden)
			return nil
		}
		tok, err := io.ReadAll(io.LimitReader(part, 256))
		if timedOut(err) {
			c.formTooSlow(w)
			return nil
		}
		if !tokenEqual(string(tok), s.csrf) {
			http.Error(w, "refused: the form's security token is stale; reload the page and try again", http.StatusForbidden)
			return nil
		}
		for {
			part, err = mr.NextPart()
			if timedOut(err) {
				return fail(http.StatusRequestTimeout, "file", fmt.Sprintf("The form did not arrive within %v: send it again.", c.bodyWait))
			}
			if err != nil {
				return fail(http.StatusBadRequest, "file", "Choose a file to upload.")
			}
			if part.FormName() == "name" {
				b, err := io.ReadAll(io.LimitReader(part, 512))
				if timedOut(err) {
					return fail(http.StatusRequestTimeout, "file", fmt.Sprintf("The form did not arrive within %v: send it again.", c.bodyWait))
				}
				name = strings.TrimSpace(string(b))
				continue
			}
			if part.FormName() == "file" {
				break
			}
		}
		if name == "" {
			name = path.Base(part.FileName())
		}
		if part.FileName() == "" {
			return fail(http.StatusBadRequest, "file", "Choose a file to upload.")
		}
		file = &partReader{r: part}
		body = stream{file, -1, conn}
	}
	var art artifact
	err := c.do(r, s, "POST", "/v1/artifacts?name="+url.QueryEscape(name), body, &art)
	if file != nil && file.ended {
		// The rest of the form after the file (its closing boundary),
		// which net/http reads before it answers, must come within
		// BodyWait. (The API bounds what is left of a file it stopped
		// reading, and a file that stalled is over already.)
		_ = conn.SetReadDeadline(time.Now().Add(c.bodyWait))
	}
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusUnauthorized:
		field := "file"
		if strings.Contains(ae.Msg, "artifact name") {
			field = "name"
		}
		// The API's own example names its query; the form has a field.
		return fail(ae.Status, field, strings.Replace(ae.Msg, "e.g. ?name=", "e.g. ", 1))
	case errors.As(err, &ae):
		return fail(ae.Status, "file", ae.Msg)
	case err != nil:
		return err
	}
	msg := "Uploaded " + art.Name + ": sha256 " + art.SHA256 + "; name it in a policy item as artifact: " + art.SHA256
	if art.AlreadyStored {
		msg = "Already stored, as " + art.Name + ": sha256 " + art.SHA256 + "; name it in a policy item as artifact: " + art.SHA256
	}
	if script {
		// The page reloads after a script's upload: the message waits in
		// the session for it.
		s.setFlash(msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		return json.NewEncoder(w).Encode(art)
	}
	return done(w, r, s, "/ui/artifacts", msg)
}

// partReader is a form's file part, saying whether it was read to its
// end.
type partReader struct {
	r     io.Reader
	ended bool
}

func (p *partReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.ended = p.ended || err == io.EOF
	return n, err
}

// ---- policies

// policyLine is one line of the YAML, with the problems the compiler
// found on it.
type policyLine struct {
	N        int
	Text     string
	Problems []string
}

// yamlProblems is a refused policy YAML set out line by line.
type yamlProblems struct {
	Lines    []policyLine // the submitted YAML, numbered, when it failed
	General  []string     // problems that name no line
	BadLines string       // "3,7": for the script that marks them in the editor
}

type policyPage struct {
	yamlProblems
	Office    string
	Policy    *policyInfo
	Artifacts []artifact
	Conflicts []conflict // why the API refused it with 409
}

var problemLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// problems sets out the policy compiler's answer ("line N: what", one per
// line) against the submitted source.
func (p *yamlProblems) problems(src, msg string) {
	byLine := map[int][]string{}
	for _, l := range strings.Split(msg, "\n") {
		if m := problemLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			byLine[n] = append(byLine[n], m[2])
		} else if strings.TrimSpace(l) != "" {
			p.General = append(p.General, l)
		}
	}
	lines := strings.Split(strings.TrimSuffix(strings.ReplaceAll(src, "\r\n", "\n"), "\n"), "\n")
	var bad []string
	for i, t := range lines {
		pl := policyLine{N: i + 1, Text: t, Problems: byLine[i+1]}
		if len(pl.Problems) > 0 {
			bad = append(bad, strconv.Itoa(i+1))
		}
		delete(byLine, i+1)
		p.Lines = append(p.Lines, pl)
	}
	for n, ps := range byLine { // past the end of the text
		for _, m := range ps {
			p.General = append(p.General, "line "+strconv.Itoa(n)+": "+m)
		}
	}
	p.BadLines = strings.Join(bad, ",")
}

func (c *Console) policyPage(r *http.Request, s *session) (*policyPage, error) {
	name := r.PathValue("name")
	p := &policyPage{Office: name}
	if err := c.do(r, s, "GET", "/v1/offices/"+url.PathEscape(name), nil, &office{}); err != nil {
		return nil, err
	}
	var pi policyInfo
	err := c.do(r, s, "GET", "/v1/offices/"+url.PathEscape(name)+"/policy", nil, &pi)
	var ae *apiError
	switch {
	case err == nil:
		p.Policy = &pi
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
	default:
		return nil, err
	}
	var arts struct{ Artifacts []artifact }
	if err := c.do(r, s, "GET", "/v1/artifacts", nil, &arts); err != nil {
		return nil, err
	}
	p.Artifacts = arts.Artifacts
	return p, nil
}

func (c *Console) showPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := c.policyPage(r, s)
	if err != nil {
		return err
	}
	f := newForm(nil)
	if p.Policy != nil {
		f.Values.Set("yaml", p.Policy.YAML)
	} else {
		f.Values.Set("yaml", "items:\n")
	}
	return c.render(w, r, s, http.StatusOK, "policy", "policies", "Policy of "+p.Office, f, p)
}

func (c *Console) applyPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	name := r.PathValue("name")
	src := strings.ReplaceAll(f.Get("yaml"), "\r\n", "\n")
	var pi policyInfo
	if err := c.do(r, s, "PUT", "/v1/offices/"+url.PathEscape(name)+"/policy", src, &pi); err != nil {
		// A conflict with named policies is not the YAML's fault: it is
		// shown at the top, with the policies, the item and the computers.
		conflicts, isConflict := refusedConflicts(err)
		rules := []rule{{"", "yaml"}}
		if isConflict {
			rules = nil
		}
		if err := f.fail(err, rules); err != nil {
			return err
		}
		p, err := c.policyPage(r, s)
		if err != nil {
			return err
		}
		p.Conflicts = conflicts
		if !isConflict {
			p.problems(src, f.Err("yaml"))
		}
		return c.render(w, r, s, f.status(), "policy", "policies", "Policy of "+name, f, p)
	}
	msg := "Applied revision " + strconv.FormatUint(pi.Revision, 10) + " to " + name + "; connected agents hear of it now."
	if pi.Unchanged {
		msg = "Unchanged: " + name + " already runs this policy, at revision " + strconv.FormatUint(pi.Revision, 10) + "; no agent runs it again."
	}
	return done(w, r, s, "/ui/offices/"+url.PathEscape(name)+"/policy", msg)
}

// ---- patches

type patchesPage struct {
	Patches   []patch
	Approvals []approval
	Missing   missingReport
	Offices   []office
	Import    *form
	Office    string
}

func (c *Console) patchesPage(r *http.Request, s *session) (*patchesPage, error) {
	p := &patchesPage{Import: newForm(nil), Office: r.URL.Query().Get("office")}
	var ps struct{ Patches []patch }
	if err := c.do(r, s, "GET", "/v1/patches", nil, &ps); err != nil {
		return nil, err
	}
	p.Patches = ps.Patches
	var as struct{ Approvals []approval }
	if err := c.do(r, s, "GET", "/v1/patch-approvals", nil, &as); err != nil {
		return nil, err
	}
	p.Approvals = as.Approvals
	q := ""
	if p.Office != "" {
		q = "?office=" + url.QueryEscape(p.Office)
	}
	if err := c.do(r, s, "GET", "/v1/patches-missing"+q, nil, &p.Missing); err != nil {
		return nil, err
	}
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return nil, err
	}
	p.Offices = offs.Offices
	return p, nil
}

func (c *Console) patches(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := c.patchesPage(r, s)
	if err != nil {
		return err
	}
	return c.render(w, r, s, http.StatusOK, "patches", "patches", "Patches", nil, p)
}

func (c *Console) importPatches(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	var out struct {
		Added   int      `json:"added"`
		Updated int      `json:"updated"`
		Patches []string `json:"patches"`
	}
	feed := f.Get("feed")
	if strings.TrimSpace(feed) == "" {
		f.Errors["feed"] = "Paste a patch feed (YAML or JSON: patches: [...])."
	} else if err := c.do(r, s, "POST", "/v1/patches/import", feed, &out); err != nil {
		if err := f.fail(err, []rule{{"", "feed"}}); err != nil {
			return err
		}
	}
	if f.Failed() {
		p, err := c.patchesPage(r, s)
		if err != nil {
			return err
		}
		p.Import = f
		return c.render(w, r, s, f.status(), "patches", "patches", "Patches", nil, p)
	}
	return done(w, r, s, "/ui/patches", "Feed imported: "+strconv.Itoa(out.Added)+" added, "+strconv.Itoa(out.Updated)+" updated.")
}

type patchPage struct {
	Patch     patch
	Approvals []approval
	Offices   []office
	Approve   *form
}

func (c *Console) showPatchPage(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	var out struct {
		Patch     patch      `json:"patch"`
		Approvals []approval `json:"approvals"`
	}
	if err := c.do(r, s, "GET", "/v1/patches/"+url.PathEscape(r.PathValue("id")), nil, &out); err != nil {
		return err
	}
	var offs struct{ Offices []office }
	if err := c.do(r, s, "GET", "/v1/offices", nil, &offs); err != nil {
		return err
	}
	if f == nil {
		f = newForm(nil)
		f.Values.Set("reboot", "never")
	}
	p := &patchPage{Patch: out.Patch, Approvals: out.Approvals, Offices: offs.Offices, Approve: f}
	return c.render(w, r, s, status, "patch", "patches", "Patch "+out.Patch.ID, nil, p)
}

func (c *Console) showPatch(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showPatchPage(w, r, s, http.StatusOK, nil)
}

func (c *Console) approvePatch(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	id := r.PathValue("id")
	body := map[string]string{"office": f.Get("office"), "window": strings.TrimSpace(f.Get("window")), "reboot": f.Get("reboot")}
	if err := c.do(r, s, "POST", "/v1/patches/"+url.PathEscape(id)+"/approve", body, nil); err != nil {
		if err := f.fail(err, []rule{{"office", "office"}, {"window", "window"}, {"reboot", "reboot"}}); err != nil {
			return err
		}
		return c.showPatchPage(w, r, s, f.status(), f)
	}
	return done(w, r, s, "/ui/patches/"+url.PathEscape(id), "Patch "+id+" approved for "+f.Get("office")+"; its policy is re-signed.")
}

// removePatch takes a patch out of the catalog, with its approvals when
// the page listed some (the button's confirmation names how many).
func (c *Console) removePatch(w http.ResponseWriter, r *http.Request, s *session) error {
	var out struct {
		Revoked []string `json:"revoked"`
	}
	id := r.PathValue("id")
	path := "/v1/patches/" + url.PathEscape(id)
	if r.PostFormValue("revoke") == "true" {
		path += "?revoke=true"
	}
	if err := c.do(r, s, "DELETE", path, nil, &out); err != nil {
		return err
	}
	msg := "Patch " + id + " removed from the catalog; every office's policy is signed again without it."
	if len(out.Revoked) > 0 {
		msg += " Approvals revoked for " + strings.Join(out.Revoked, ", ") + "."
	}
	return done(w, r, s, "/ui/patches", msg)
}

func (c *Console) revokePatch(w http.ResponseWriter, r *http.Request, s *session) error {
	id, office := r.PathValue("id"), r.PostFormValue("office")
	if err := c.do(r, s, "DELETE", "/v1/patches/"+url.PathEscape(id)+"/approve?office="+url.QueryEscape(office), nil, nil); err != nil {
		return err
	}
	return done(w, r, s, "/ui/patches/"+url.PathEscape(id), "Approval of "+id+" for "+office+" revoked.")
}
