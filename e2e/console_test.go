package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// chromium finds Debian's Chromium (apt-get install chromium), or another
// Chrome named by OUTPOST_CHROME.
func chromium() string {
	if p := os.Getenv("OUTPOST_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserUI drives one headless Chromium tab through the console.
type browserUI struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func newBrowserUI(t *testing.T, base string) *browserUI {
	t.Helper()
	bin := chromium()
	if bin == "" {
		t.Skip("chromium is not installed (apt-get install chromium, or set OUTPOST_CHROME): skipping the browser test of the web console")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1366, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	shots := filepath.Join(testutil.RepoRoot(t), "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browserUI{t: t, ctx: ctx, base: base, shots: shots}
}

func (b *browserUI) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

func eval[T any](b *browserUI, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browserUI) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	l, _ := chromedp.Run(ctx, chromedp.Location())
	return l
}

func (b *browserUI) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
}

// submit clicks a button and waits for the next page to have loaded: the
// old document carries a mark the new one does not.
func (b *browserUI) submit(button string) {
	b.t.Helper()
	b.click(button, true)
	b.waitFor(`window.__outpostOld === undefined && document.readyState === "complete" && !!document.querySelector("main")`)
}

// click clicks an element as a person would; mark marks the document so
// that waitFor can tell the next one.
func (b *browserUI) click(sel string, mark bool) {
	b.t.Helper()
	js := fmt.Sprintf(`(function(){ const e = document.querySelector(%q); if (!e) return false; %s e.click(); return true })()`,
		sel, map[bool]string{true: "window.__outpostOld = true;", false: ""}[mark])
	if !eval[bool](b, js) {
		b.t.Fatalf("at %s: nothing to click at %s", b.location(), sel)
	}
}

// waitFor waits until a JavaScript condition holds, through navigations
// (while the next page loads, evaluating fails; that is retried).
func (b *browserUI) waitFor(cond string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("at %s: %s did not hold in 30s (last error %v)", b.location(), cond, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browserUI) fill(fields ...string) {
	b.t.Helper()
	for i := 0; i < len(fields); i += 2 {
		js := fmt.Sprintf(`(function(){ const e = document.querySelector(%q); if (!e) return false; e.focus(); e.value = %q;
			e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return e.value === %q })()`,
			fields[i], fields[i+1], fields[i+1])
		if !eval[bool](b, js) {
			b.t.Fatalf("at %s: cannot set %s to %q", b.location(), fields[i], fields[i+1])
		}
	}
}

func (b *browserUI) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, sel))
}

// errorBeside is the text of the first field error after the field with
// this id and before the next label: what a person reads beside it.
func (b *browserUI) errorBeside(id string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(function(id) {
		const f = document.getElementById(id);
		if (!f) return "(no field " + id + ")";
		const all = [...document.querySelectorAll('.field-error, label, [id="' + id + '"]')];
		for (let i = all.indexOf(f) + 1; i < all.length; i++) {
			if (all[i].tagName === "LABEL") return "";
			if (all[i].classList.contains("field-error") && all[i].textContent.trim() !== "") return all[i].textContent;
		}
		return "";
	})(%q)`, id))
}

func (b *browserUI) wantErrorBeside(id, want string) {
	b.t.Helper()
	got := b.errorBeside(id)
	if !strings.Contains(got, want) {
		b.shot("failed-" + id)
		b.t.Fatalf("at %s: error beside #%s is %q, want it to say %q", b.location(), id, got, want)
	}
}

// shot saves a PNG of the whole page at the current width.
func (b *browserUI) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

type page struct{ name, path string }

// shootAll saves a screenshot of each page at laptop and tablet widths,
// checking that each renders and nothing overflows sideways.
func (b *browserUI) shootAll(pages []page) {
	b.t.Helper()
	for _, w := range []int64{1366, 768} {
		b.width(w)
		for _, p := range pages {
			b.open(p.path)
			if h1 := b.text("h1"); h1 == "" || strings.Contains(h1, "Not Found") || strings.Contains(h1, "Forbidden") {
				b.t.Fatalf("%s: %q", p.path, b.text("main"))
			}
			// Nothing overflows the page sideways at this width.
			if over := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
				b.shot(fmt.Sprintf("%s-%d-overflow", p.name, w))
				b.t.Errorf("%s overflows sideways at %dpx", p.path, w)
			}
			b.shot(fmt.Sprintf("%s-%d", p.name, w))
		}
	}
	b.width(1366)
}

func (b *browserUI) width(w int64) {
	b.t.Helper()
	b.do(chromedp.EmulateViewport(w, 900))
}

// TestConsoleInBrowser drives the web console in headless Chromium against
// a real coordinator, MinIO and agents: sign in, add an office, upload an
// artifact, apply a policy and watch the agents become compliant, with a
// validation error read at its line and bad input refused in every form.
// It leaves a PNG of each page at laptop and tablet widths in screenshots/.
func TestConsoleInBrowser(t *testing.T) {
	if chromium() == "" {
		t.Skip("chromium is not installed (apt-get install chromium, or set OUTPOST_CHROME): skipping the browser test of the web console")
	}
	minio := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(minio))
	b := newBrowserUI(t, c.URL)
	start := time.Now()

	// / leads to the console, which asks for a sign-in. A wrong password
	// is refused beside the field; the admin token signs in.
	b.open("/")
	if loc := b.location(); !strings.Contains(loc, "/ui/login") {
		t.Fatalf("/ went to %s", loc)
	}
	b.shot("login-1366")
	b.fill("#user", "admin", "#password", "not the password")
	b.submit("#signin")
	b.wantErrorBeside("password", "")
	b.click("details summary", false)
	b.fill("#token", c.Token)
	b.submit("#signin")
	if got := b.text(".who"); !strings.Contains(got, "admin") {
		t.Fatalf("signed in as %q", got)
	}

	// An office: bad input first — nothing is created — then a good one.
	b.open("/ui/offices")
	b.submit("#add-office")
	b.fill("#name", "Lab!", "#description", "The test lab", "#location", "Basement", "#checkin_interval", "5s",
		"#time_zone", "Europe/Berlin", "#subnets", "10.77.0.0/16")
	b.submit("#save-office")
	b.wantErrorBeside("name", "office name")
	if v := eval[string](b, `document.getElementById("description").value`); v != "The test lab" {
		t.Fatalf("the form lost the description: %q", v)
	}
	b.shot("office-new-error-1366")
	// The distribution server shows in mode distribution only (the page
	// works without the script, which hides it otherwise).
	if !eval[bool](b, `document.getElementById("distribution-server-field").hidden && document.getElementById("distribution_server").disabled`) {
		t.Fatal("the distribution server field shows in mode direct")
	}
	b.fill("#mode", "distribution")
	if eval[bool](b, `document.getElementById("distribution-server-field").hidden || document.getElementById("distribution_server").disabled`) {
		t.Fatal("the distribution server field is hidden in mode distribution")
	}
	b.fill("#mode", "direct")
	b.fill("#name", "lab", "#subnets", "10.77.0.0/33")
	b.submit("#save-office")
	b.wantErrorBeside("subnets", "subnet")
	b.fill("#subnets", "", "#mode", "relay")
	b.submit("#save-office")
	b.wantErrorBeside("relays", "relay")
	if code, _ := c.Do("GET", "/v1/offices/lab", nil, nil); code != 404 {
		t.Fatalf("a refused form created the office: %d", code)
	}
	b.fill("#mode", "direct", "#checkin_interval", "5 s")
	b.submit("#save-office")
	b.wantErrorBeside("checkin_interval", "duration")
	b.fill("#checkin_interval", "5s")
	b.submit("#save-office")
	if loc := b.location(); !strings.HasSuffix(loc, "/ui/offices/lab") {
		t.Fatalf("after adding the office: %s (%s)", loc, b.text("main"))
	}
	var office struct {
		Description     string `json:"description"`
		TimeZone        string `json:"time_zone"`
		CheckinInterval string `json:"checkin_interval"`
	}
	c.MustDo("GET", "/v1/offices/lab", nil, &office)
	if office.Description != "The test lab" || office.TimeZone != "Europe/Berlin" || office.CheckinInterval != "5s" {
		t.Fatalf("office as saved: %+v", office)
	}

	// Edit with a bad time zone: refused beside it, nothing saved.
	b.fill("#time_zone", "Mars/Olympus", "#description", "changed")
	b.submit("#save-office")
	b.wantErrorBeside("time_zone", "time_zone")
	var o2 struct{ Description string }
	c.MustDo("GET", "/v1/offices/lab", nil, &o2)
	if o2.Description != "The test lab" {
		t.Fatalf("a refused edit saved the description: %q", o2.Description)
	}

	// Computers by name, then an enrollment token from the page.
	b.open("/ui/offices/lab")
	b.fill("#hostnames", "lab-pc-1, not a host!")
	b.submit("#add-computers")
	b.wantErrorBeside("hostnames", "hostname")
	b.fill("#hostnames", "lab-pc-1, lab-pc-2")
	b.submit("#add-computers")
	if got := b.text("#computer-list"); !strings.Contains(got, "lab-pc-2") {
		t.Fatalf("computers: %q", got)
	}
	b.fill("#token-uses", "0")
	b.submit("#create-token")
	b.wantErrorBeside("token-uses", "uses")
	b.fill("#token-uses", "2", "#token-ttl", "1h")
	b.submit("#create-token")
	token := strings.TrimSpace(b.text("#new-token pre"))
	if !strings.HasPrefix(token, "opt_") {
		t.Fatalf("no token on the page: %q", b.text("main"))
	}
	b.shot("office-1366")

	// Two real agents enrol with it while the artifact goes up.
	startAgent(t, c, token, "lab-pc-1", "127.0.0.71")
	startAgent(t, c, token, "lab-pc-2", "127.0.0.72")

	// Upload: a bad name is refused beside the name field and nothing is
	// stored; then the real package, with the progress bar's script.
	pkg := filepath.Join(testutil.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz")
	b.open("/ui/artifacts")
	b.do(chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{pkg}))
	b.fill("#upload-name", "bad name!")
	b.click("#upload", true)
	b.waitFor(`!!document.querySelector("#name-error .field-error")`)
	// The page's script sent it (XMLHttpRequest, with progress): the
	// document is the same one, not a new page from the plain form.
	if !eval[bool](b, `window.__outpostOld === true`) {
		t.Fatal("the upload did not go through the page's script")
	}
	b.wantErrorBeside("upload-name", "artifact name")
	var arts struct {
		Artifacts []struct{ SHA256, Name string }
	}
	c.MustDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 0 {
		t.Fatalf("a refused upload stored %+v", arts.Artifacts)
	}
	b.fill("#upload-name", "")
	b.click("#upload", true)
	b.waitFor(`window.__outpostOld === undefined && document.readyState === "complete" && !!document.querySelector("#artifacts")`)
	c.MustDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 1 || arts.Artifacts[0].Name != "hello-1.0.0.tar.gz" {
		t.Fatalf("artifacts after upload: %+v", arts.Artifacts)
	}
	sha := arts.Artifacts[0].SHA256
	if got := b.text("#artifacts"); !strings.Contains(got, sha) {
		t.Fatalf("the page does not list %s: %q", sha, got)
	}
	b.shot("artifacts-1366")

	// Policy: an error is shown at its line, nothing is applied; then the
	// good one applies.
	// The office's first revision came with its first agent, asking nothing.
	var before struct{ Revision uint64 }
	c.MustDo("GET", "/v1/offices/lab/policy", nil, &before)
	b.open("/ui/offices/lab/policy")
	bad := "items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: " + sha + "\n    colour: blue\n"
	b.fill("#yaml", bad)
	b.submit("#apply")
	if cls := eval[string](b, `document.getElementById("line-6").className`); cls != "bad" {
		t.Fatalf("line 6 is not marked: %q\n%s", cls, b.text("#policy-problems"))
	}
	if got := b.text("#line-6 .line-error"); !strings.Contains(got, "line 6") || !strings.Contains(got, "colour") {
		t.Fatalf("the error at line 6 says %q", got)
	}
	if sel := eval[string](b, `(function(t){return t.value.substring(t.selectionStart, t.selectionEnd)})(document.getElementById("yaml"))`); sel != "    colour: blue" {
		t.Fatalf("the editor selects %q, not the bad line", sel)
	}
	b.shot("policy-error-1366")
	var after struct{ Revision uint64 }
	if code, _ := c.Do("GET", "/v1/offices/lab/policy", nil, &after); code != 200 || after.Revision != before.Revision {
		t.Fatalf("a refused policy was applied: %d, revision %d, was %d", code, after.Revision, before.Revision)
	}
	b.fill("#yaml", packageYAML(sha, "present"))
	b.submit("#apply")
	if got := b.text(".flash"); !strings.Contains(got, fmt.Sprintf("Applied revision %d", before.Revision+1)) {
		t.Fatalf("apply: %q", b.text("main"))
	}

	// Watch the agents become compliant on the agents page.
	b.open("/ui/agents?office=lab")
	deadline := time.Now().Add(90 * time.Second)
	for {
		n := eval[int](b, `document.querySelectorAll('#agents tr[data-agent] .compliance .ok').length`)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			b.shot("agents-not-compliant")
			t.Fatalf("agents not compliant on the page: %q", b.text("main"))
		}
		time.Sleep(500 * time.Millisecond) // the page is polled as a person would reload it
		b.do(chromedp.Reload())
	}
	t.Logf("agents compliant in the console %v after the start", time.Since(start).Round(time.Millisecond))
	// The filters: a bad state is refused beside its field.
	b.open("/ui/agents?state=sleepy")
	b.wantErrorBeside("f-state", "state")
	b.open("/ui/")
	if got := b.text("#n-compliance"); got != "100%" {
		t.Fatalf("dashboard compliance %q", got)
	}

	// Endpoint scope: label an agent on its page (a bad label is refused
	// beside the field), create a label policy on the policies page (a bad
	// priority first), and read the agent's effective policy: each item
	// with the policy it came from. A conflicting policy is refused and
	// shown at the top of the form, nothing saved, the input kept.
	var labAgents struct {
		Agents []struct{ ID, Hostname string }
	}
	c.MustDo("GET", "/v1/agents?office=lab&q=lab-pc-1", nil, &labAgents)
	if len(labAgents.Agents) != 1 {
		t.Fatalf("lab-pc-1: %+v", labAgents)
	}
	pc1 := labAgents.Agents[0].ID
	b.open("/ui/agents/" + pc1)
	b.fill("#add-labels", "Kiosk!")
	b.submit("#save-labels")
	b.wantErrorBeside("add-labels", "key")
	b.fill("#add-labels", "kiosk floor=3")
	b.submit("#save-labels")
	if got := b.text("#label-list"); !strings.Contains(got, "kiosk") || !strings.Contains(got, "floor=3") {
		t.Fatalf("labels on the page: %q (%s)", got, b.text("main"))
	}
	b.open("/ui/agents?label=kiosk")
	if n := eval[int](b, `document.querySelectorAll('#agents tr[data-agent]').length`); n != 1 || !strings.Contains(b.text("#agents"), "lab-pc-1") {
		t.Fatalf("label filter shows %d agents: %q", n, b.text("main"))
	}
	kioskYAML := "items:\n  - kind: package\n    name: hello-kiosk\n    version: \"1.0.0\"\n    artifact: " + sha + "\n    prefix: /opt/kiosk\n"
	b.open("/ui/policies")
	b.submit("#new-policy")
	b.fill("#name", "kiosks", "#t-labels", "kiosk", "#priority", "high", "#yaml", kioskYAML)
	b.submit("#apply")
	b.wantErrorBeside("priority", "whole number")
	if v := eval[string](b, `document.getElementById("t-labels").value`); v != "kiosk" {
		t.Fatalf("the form lost the labels: %q", v)
	}
	b.fill("#priority", "5")
	b.submit("#apply")
	if got := b.text(".flash"); !strings.Contains(got, "Policy kiosks created") {
		t.Fatalf("create policy: %q", b.text("main"))
	}
	var kiosks struct {
		Priority  int
		Computers []string
	}
	c.MustDo("GET", "/v1/policies/kiosks", nil, &kiosks)
	if kiosks.Priority != 5 || strings.Join(kiosks.Computers, ",") != "lab-pc-1" {
		t.Fatalf("kiosks as saved: %+v", kiosks)
	}
	b.open("/ui/agents/" + pc1)
	if got := b.text(`#effective-items tr[data-item="package/hello-kiosk"] .origin`); got != "kiosks" {
		t.Fatalf("hello-kiosk comes from %q: %s", got, b.text("#effective"))
	}
	if got := b.text(`#effective-items tr[data-item="package/hello"] .origin`); got != "office:lab" {
		t.Fatalf("hello comes from %q: %s", got, b.text("#effective"))
	}
	b.shot("agent-effective-1366")
	b.open("/ui/policies/+new")
	conflicting := strings.Replace(kioskYAML, `"1.0.0"`, `"0.9"`, 1)
	b.fill("#name", "kiosks-old", "#t-labels", "kiosk", "#priority", "5", "#yaml", conflicting)
	b.submit("#apply")
	if got := b.text("#conflicts"); !strings.Contains(got, "kiosks-old") || !strings.Contains(got, "package/hello-kiosk") || !strings.Contains(got, "lab-pc-1") {
		t.Fatalf("the conflict is not shown: %q (%s)", got, b.text("main"))
	}
	if got := b.text("#top-error"); !strings.Contains(got, `"kiosks" and "kiosks-old"`) {
		t.Fatalf("the API's message is not at the top: %q", got)
	}
	if v := eval[string](b, `document.getElementById("name").value + "|" + document.getElementById("yaml").value`); v != "kiosks-old|"+conflicting {
		t.Fatalf("the form lost the input: %q", v)
	}
	if code, _ := c.Do("GET", "/v1/policies/kiosks-old", nil, nil); code != 404 {
		t.Fatalf("the conflicting policy was saved: %d", code)
	}
	b.shot("policy-conflict-1366")

	// Users, groups, permissions, audit: bad input beside the field.
	b.open("/ui/users")
	b.fill("#name", "Bad Name", "#password", "a long enough password", "#role", "operator")
	b.submit("#add-user")
	b.wantErrorBeside("name", "name")
	b.fill("#name", "olga", "#password", "short")
	b.submit("#add-user")
	b.wantErrorBeside("password", "password")
	if code, _ := c.Do("GET", "/v1/users/olga", nil, nil); code != 404 {
		t.Fatal("a refused user was created")
	}
	b.fill("#name", "olga", "#password", "a long enough password", "#role", "operator")
	b.submit("#add-user")
	b.open("/ui/groups")
	b.fill("#name", "Lab Techs", "#members", "olga")
	b.submit("#add-group")
	b.wantErrorBeside("name", "name")
	b.fill("#name", "lab-techs")
	b.submit("#add-group")
	b.open("/ui/offices/lab/permissions")
	b.fill("#grants", "group:lab-techs=view,fly")
	b.submit("#save-perms")
	b.wantErrorBeside("grants", "right")
	b.fill("#grants", "group:lab-techs=view,command")
	b.submit("#save-perms")
	if got := b.text(".flash"); !strings.Contains(got, "Permissions saved") {
		t.Fatalf("permissions: %q", b.text("main"))
	}
	b.open("/ui/audit?since=yesterday")
	b.wantErrorBeside("a-since", "since")

	// A screenshot of every page at laptop and tablet widths.
	var agents struct {
		Agents []struct{ ID string }
	}
	c.MustDo("GET", "/v1/agents?office=lab", nil, &agents)
	pages := []page{
		{"dashboard", "/ui/"}, {"offices", "/ui/offices"}, {"office-new", "/ui/offices/+new"}, {"office", "/ui/offices/lab"},
		{"agents", "/ui/agents"}, {"agent", "/ui/agents/" + agents.Agents[0].ID}, {"artifacts", "/ui/artifacts"},
		{"policies", "/ui/policies"}, {"policy", "/ui/offices/lab/policy"},
		{"named-policy", "/ui/policies/kiosks"}, {"named-policy-new", "/ui/policies/+new"}, {"agents-kiosk", "/ui/agents?label=kiosk"}, {"users", "/ui/users"}, {"user", "/ui/users/olga"}, {"groups", "/ui/groups"},
		{"group", "/ui/groups/lab-techs"}, {"permissions", "/ui/offices/lab/permissions"},
		{"host-permissions", "/ui/agents/" + agents.Agents[0].ID + "/permissions"}, {"audit", "/ui/audit"},
	}
	// Setting permissions signed a new revision: wait until the agents
	// report it, so that the pages show the fleet compliant.
	var pol struct{ Revision uint64 }
	c.MustDo("GET", "/v1/offices/lab/policy", nil, &pol)
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "lab", 2, pol.Revision), "agents compliant at revision %d", pol.Revision)
	b.shootAll(pages)

	// Patches: a bad feed is refused beside the feed, nothing imported.
	b.open("/ui/patches")
	b.fill("#feed", "patches:\n  - id: OUT-2026-001\n    title: t\n    severity: dreadful\n    package: hello\n    fixed_version: 2.0.0\n    artifact: "+sha+"\n")
	b.submit("#import")
	b.wantErrorBeside("feed", "severity")
	var ps struct{ Patches []any }
	c.MustDo("GET", "/v1/patches", nil, &ps)
	if len(ps.Patches) != 0 {
		t.Fatal("a refused feed imported patches")
	}
	b.fill("#feed", "patches:\n  - id: OUT-2026-001\n    title: hello fixes CVE-2026-1234\n    severity: high\n    package: hello\n    fixed_version: 1.0.0\n    artifact: "+sha+"\n")
	b.submit("#import")
	b.open("/ui/patches/OUT-2026-001")
	b.fill("#approve-office", "lab", "#approve-window", "25:00-26:00")
	b.submit("#approve")
	b.wantErrorBeside("approve-window", "")
	var aps struct{ Approvals []any }
	c.MustDo("GET", "/v1/patch-approvals", nil, &aps)
	if len(aps.Approvals) != 0 {
		t.Fatal("a refused approval was saved")
	}

	// An approval rule from the patches page: a bad number of days is
	// refused beside its field, nothing saved; then it is created. (Not
	// evaluated here: it would approve the patch for lab.)
	b.open("/ui/patches")
	b.submit("#patch-rules")
	b.submit("#new-rule")
	b.fill("#name", "lab-first", "#test_office", "lab", "#after_days", "400", "#window", "01:00-05:00")
	b.submit("#save-rule")
	b.wantErrorBeside("after_days", "after_days")
	if v := eval[string](b, `document.getElementById("window").value`); v != "01:00-05:00" {
		t.Fatalf("the form lost the window: %q", v)
	}
	var rules struct{ Rules []struct{ Name string } }
	c.MustDo("GET", "/v1/patch-rules", nil, &rules)
	if len(rules.Rules) != 0 {
		t.Fatalf("a refused rule was saved: %+v", rules)
	}
	b.fill("#after_days", "2")
	b.submit("#save-rule")
	if got := b.text(".flash"); !strings.Contains(got, "Rule lab-first created") {
		t.Fatalf("create rule: %q", b.text("main"))
	}

	// The patch plugin is not built for e2e agents: from here on their
	// report-only patch item fails, which the dashboard shows.
	b.shootAll([]page{{"patches", "/ui/patches"}, {"patch", "/ui/patches/OUT-2026-001"}, {"patch-rules", "/ui/patch-rules"},
		{"patch-rule", "/ui/patch-rules/lab-first"}, {"patch-rule-new", "/ui/patch-rules/+new"}, {"dashboard-failed", "/ui/"}})
	b.width(768)
	b.open("/ui/offices/lab/policy")
	b.fill("#yaml", bad)
	b.submit("#apply")
	b.shot("policy-error-768")
	b.open("/ui/policies/+new")
	b.fill("#name", "kiosks-old", "#t-labels", "kiosk", "#priority", "5", "#yaml", conflicting)
	b.submit("#apply")
	if got := b.text("#conflicts"); !strings.Contains(got, "kiosks-old") {
		t.Fatalf("the conflict is not shown at 768px: %q", got)
	}
	b.shot("policy-conflict-768")
	b.open("/ui/agents/" + pc1)
	b.shot("agent-effective-768")

	// Sign out: the console asks for a sign-in again.
	b.width(1366)
	b.open("/ui/")
	b.submit(".signout button")
	b.open("/ui/offices")
	if loc := b.location(); !strings.Contains(loc, "/ui/login") {
		t.Fatalf("after sign-out: %s", loc)
	}
	b.width(768)
	b.shot("login-768")

	// A read-only user sees the same pages without the forms the API would
	// refuse, and a note saying whom to ask: the office's settings and the
	// rule's fields show disabled, the policy can be read but not applied.
	c.MustDo("POST", "/v1/users", map[string]any{"name": "rita", "password": "a long enough password", "role": "read-only"}, nil)
	b.width(1366)
	b.open("/ui/login")
	b.fill("#user", "rita", "#password", "a long enough password")
	b.submit("#signin")
	readOnly := []page{{"office-read-only", "/ui/offices/lab"}, {"policy-read-only", "/ui/offices/lab/policy"},
		{"agent-read-only", "/ui/agents/" + pc1}, {"patch-read-only", "/ui/patches/OUT-2026-001"}, {"patch-rule-read-only", "/ui/patch-rules/lab-first"}}
	for _, p := range readOnly {
		b.open(p.path)
		if n := eval[int](b, `document.querySelectorAll("form[method=post]:not(.signout)").length +
			[...document.querySelectorAll("button")].filter(e => !e.closest("form.signout, form[method=get]")).length`); n != 0 {
			t.Errorf("%s: a read-only user is offered %d forms or buttons", p.path, n)
		}
		if got := b.text("#read-only-note"); !strings.Contains(got, "ask an admin") {
			t.Errorf("%s: no read-only note: %q", p.path, got)
		}
	}
	b.open("/ui/offices/lab")
	if !eval[bool](b, `const z = document.getElementById("time_zone"); z.matches(":disabled") && z.value !== ""`) {
		t.Errorf("a read-only user's office settings: %q", b.text("#computers"))
	}
	b.open("/ui/offices/lab/policy")
	if !eval[bool](b, `const y = document.getElementById("yaml"); y.readOnly && y.value.includes("kind: package")`) {
		t.Error("a read-only user does not see the office's policy")
	}
	b.shootAll(readOnly)
	t.Logf("screenshots of %d pages at 1366 and 768 px in %s", len(pages), b.shots)
}
