package patches

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	good := `patches:
  - id: OUT-1
    title: hello fix
    severity: high
    package: hello
    fixed_version: 2.0.0
    artifact: ` + shaA + `
    reboot_required: true
    rollback_allowed: true
    supersedes: [OUT-0]
    released: 2026-11-01
`
	ps, err := Parse([]byte(good), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != "OUT-1" || !ps[0].RebootRequired || ps[0].Supersedes[0] != "OUT-0" || !ps[0].Imported.Equal(now) ||
		ps[0].Released.Format("2006-01-02") != "2026-11-01" {
		t.Fatalf("parsed %+v", ps)
	}
	// JSON is YAML too.
	js := `{"patches":[{"id":"OUT-2","severity":"low","package":"hello","fixed_version":"2.0.1","artifact":"sha256:` + shaB + `"}]}`
	if ps, err := Parse([]byte(js), now); err != nil || ps[0].Artifact != shaB {
		t.Fatalf("JSON feed: %+v, %v", ps, err)
	}

	tests := []struct{ name, feed, want string }{
		{"empty", "", "the feed is empty"},
		{"malformed", "patches: [\n  - id: x\n", "the feed is malformed"},
		{"unknown field", "patches:\n  - id: A\n    colour: red\n", `line 3: unknown key "colour"`},
		{"a typo", "patches:\n  - id: A\n    severty: high\n", `line 3: unknown key "severty" (did you mean "severity"?)`},
		{"a bare list", "- id: A\n  severity: high\n", "the feed is a bare list: put its entries under a top-level patches: key"},
		{"no patches", "patches: []\n", "has no patches"},
		{"supersedes itself", "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + ", supersedes: [A]}\n", "patch A: supersedes itself"},
		{"duplicate", "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + "}\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + "}\n", "patch A: appears twice"},
		{"bad severity", "patches:\n  - {id: A, severity: urgent, package: p, fixed_version: '1', artifact: " + shaA + "}\n", `severity "urgent" is not one of low, medium, high, critical`},
		{"bad artifact", "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: abc}\n", `artifact "abc" is not a SHA-256`},
		{"bad date", "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + ", released: yesterday}\n", "is not a date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.feed), now)
			var fe *FeedError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v; want a FeedError with %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + "}\n"))
	f.Add([]byte(`{"patches":[{"id":"B","supersedes":["B"]}]}`))
	f.Add([]byte("patches: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data, time.Unix(0, 0))
		if err != nil {
			// The API's 400 body: bounded whatever the feed.
			if n := len(err.Error()); n > 128<<10 {
				t.Fatalf("an error of %d bytes for a feed of %d", n, len(data))
			}
			return
		}
		for _, p := range ps {
			if !idRE.MatchString(p.ID) || SeverityRank(p.Severity) < 0 || !sha256RE.MatchString(p.Artifact) ||
				len(p.Title) > MaxTitle || len(p.Supersedes) > MaxSupersedes {
				t.Fatalf("accepted an invalid entry %+v", p)
			}
			for _, s := range p.Supersedes {
				if s == p.ID {
					t.Fatalf("accepted %s superseding itself", p.ID)
				}
			}
		}
	})
}

func TestCheckCatalog(t *testing.T) {
	cat := map[string]store.Patch{
		"A": {ID: "A", Supersedes: []string{"B"}},
		"B": {ID: "B", Supersedes: []string{"C", "GONE"}},
		"C": {ID: "C"},
	}
	if err := CheckCatalog(cat); err != nil {
		t.Fatalf("a chain is not a cycle: %v", err)
	}
	cat["C"] = store.Patch{ID: "C", Supersedes: []string{"A"}}
	err := CheckCatalog(cat)
	if err == nil || !strings.Contains(err.Error(), "supersedes forms a cycle: A → B → C → A") {
		t.Fatalf("cycle: %v", err)
	}
	sup := Superseded([]string{"A", "C"}, map[string]store.Patch{"A": {ID: "A", Supersedes: []string{"B"}}, "B": {ID: "B", Supersedes: []string{"C"}}, "C": {ID: "C"}})
	if !sup["C"] || sup["A"] {
		t.Fatalf("Superseded = %v; want C (through B)", sup)
	}
}

// TestImportIsAllOrNothing: a feed whose patches form a cycle with the
// catalog is refused as a whole by the real store.
func TestImportIsAllOrNothing(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.ImportPatches([]store.Patch{{ID: "A", Supersedes: []string{"B"}}}, CheckCatalog); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.ImportPatches([]store.Patch{{ID: "B", Supersedes: []string{"A"}}, {ID: "Z"}}, CheckCatalog)
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("import = %v; want a cycle error", err)
	}
	ps, _ := st.Patches()
	if len(ps) != 1 || ps[0].ID != "A" {
		t.Fatalf("catalog after a refused import: %+v", ps)
	}
}

// TestEvaluate: a rule approves in its test office at once, and elsewhere
// only after every test agent had the patch installed for AfterDays.
func TestEvaluate(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, o := range []string{"lab", "berlin", "paris"} {
		if err := st.CreateOffice(store.Office{Name: o, Mode: "direct"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.ImportPatches([]store.Patch{
		{ID: "HIGH-1", Severity: "high"}, {ID: "LOW-1", Severity: "low"},
	}, CheckCatalog); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutRule(store.ApprovalRule{Name: "r", MinSeverity: "high", TestOffice: "lab", AfterDays: 3, Offices: []string{"berlin"}}); err != nil {
		t.Fatal(err)
	}
	day0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	added, err := Evaluate(st, day0)
	if err != nil || len(added) != 1 || added[0].Office != "lab" || added[0].Patch != "HIGH-1" || added[0].By != "rule r" {
		t.Fatalf("day 0: %+v, %v; want HIGH-1 approved in lab only", added, err)
	}
	// A lab agent reports it installed; another has not yet.
	setReport(t, st, "a1", "lab", "compliant")
	setReport(t, st, "a2", "lab", "pending")
	if added, _ := Evaluate(st, day0.Add(24*time.Hour)); len(added) != 0 {
		t.Fatalf("approved while a lab agent lacks the patch: %+v", added)
	}
	setReport(t, st, "a2", "lab", "compliant")
	if added, _ := Evaluate(st, day0.Add(48*time.Hour)); len(added) != 0 { // clean since day 2
		t.Fatalf("approved on the first clean day: %+v", added)
	}
	if added, _ := Evaluate(st, day0.Add(4*24*time.Hour)); len(added) != 0 {
		t.Fatalf("approved after 2 clean days of 3: %+v", added)
	}
	added, err = Evaluate(st, day0.Add(5*24*time.Hour))
	if err != nil || len(added) != 1 || added[0].Office != "berlin" || added[0].Patch != "HIGH-1" {
		t.Fatalf("after 3 clean days: %+v, %v; want HIGH-1 in berlin", added, err)
	}
	aps, _ := st.Approvals("paris")
	if len(aps) != 0 {
		t.Fatalf("paris is not a target: %+v", aps)
	}
}

// setReport enrols agent id in office (through a token, as agents do) if
// it is new, and gives it a last report with patch HIGH-1 in status.
func setReport(t *testing.T, st *store.Store, id, office, status string) {
	t.Helper()
	if _, err := st.Member(id); err != nil {
		hash := "hash-" + id
		if err := st.CreateToken(store.Token{ID: "tok-" + id, Hash: hash, Office: office, Role: "agent", Expires: time.Now().Add(time.Hour), Uses: 1}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Enroll(hash, time.Now(), func(store.Token, store.Office) (store.Member, error) {
			return store.Member{ID: id, Hostname: id, Office: office, Home: office, Role: "agent"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.UpdateMember(id, func(m *store.Member) {
		m.Report = &store.Report{Revision: 1, At: time.Now(), Items: []store.ItemStatus{{ID: "patch/HIGH-1", Kind: "patch", Status: status}}}
	}); err != nil {
		t.Fatal(err)
	}
}
