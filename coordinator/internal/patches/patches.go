// Package patches is the coordinator's patch catalog logic: it reads a
// vendor or in-house feed (YAML or JSON) into catalog entries, refusing the
// whole feed when anything in it is wrong, and it evaluates approval rules
// ("severity at least high, after 3 days installed cleanly in the lab
// office") against what agents report.
//
// It does not store anything itself (see the store) and does not build
// policy (see the API, which adds approved patches to an office's items).
package patches

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/config"
)

// Severities, lowest first.
var Severities = []string{"low", "medium", "high", "critical"}

// SeverityRank orders severities; -1 for an unknown one.
func SeverityRank(s string) int {
	for i, v := range Severities {
		if v == s {
			return i
		}
	}
	return -1
}

// Bounds on a feed. A catalog patch's title and supersedes travel in the
// signed policy of every office to every agent (approved, or report-only
// for hosts to scan), so they are kept short; the number of entries bounds
// the work and the error of one import.
const (
	MaxFeed        = 4 << 20 // bytes
	MaxFeedPatches = 10000   // entries of one feed, as many as a policy has items
	MaxTitle       = 256     // bytes of a title
	MaxSupersedes  = 100     // ids one patch supersedes
)

var (
	idRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// entry is one patch as a feed writes it.
type entry struct {
	ID              string   `yaml:"id"`
	Title           string   `yaml:"title"`
	Severity        string   `yaml:"severity"`
	Package         string   `yaml:"package"`
	FixedVersion    string   `yaml:"fixed_version"`
	Artifact        string   `yaml:"artifact"`
	RebootRequired  bool     `yaml:"reboot_required"`
	RollbackAllowed bool     `yaml:"rollback_allowed"`
	Supersedes      []string `yaml:"supersedes"`
	Released        string   `yaml:"released"`
}

type feed struct {
	Patches []entry `yaml:"patches"`
}

// maxProblems caps how many problems one error lists: enough to fix a feed
// in a few rounds, few enough for an HTTP error body and a terminal.
const maxProblems = 50

// FeedError is a feed the admin must fix; nothing of it was imported.
type FeedError struct {
	Problems []string
	// Omitted counts problems found beyond those listed.
	Omitted int
}

func (e *FeedError) Error() string {
	msg := "the feed was not imported: " + strings.Join(e.Problems, "; ")
	if e.Omitted > 0 {
		msg += fmt.Sprintf(" (and %d more problems)", e.Omitted)
	}
	return msg
}

// newFeedError lists the first maxProblems of problems.
func newFeedError(problems []string) *FeedError {
	if len(problems) > maxProblems {
		return &FeedError{Problems: problems[:maxProblems:maxProblems], Omitted: len(problems) - maxProblems}
	}
	return &FeedError{Problems: problems}
}

// maxQuoted bounds how much of a value an error quotes.
const maxQuoted = 64

// quote is s as an error shows it: quoted, so that nothing in it acts on
// the reader's terminal, and cut after maxQuoted bytes (on a character
// boundary).
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// printable says whether s has only letters, marks, numbers, punctuation,
// symbols and spaces: no newline, tab, escape, bidi override or other
// control or format character.
func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) })
}

// ArtifactLookup tells whether an artifact was uploaded.
type ArtifactLookup interface {
	Artifact(sha256 string) (size int64, name string, ok bool, err error)
}

// Parse reads a feed, YAML or JSON, checking each entry on its own. now
// stamps the entries' import time.
func Parse(data []byte, now time.Time) ([]store.Patch, error) {
	if len(data) > MaxFeed {
		return nil, &FeedError{Problems: []string{fmt.Sprintf("the feed is %d bytes, more than the limit of %d", len(data), MaxFeed)}}
	}
	// The entries are counted before they are decoded and checked: a
	// feed of MaxFeed bytes holds a million tiny entries, and each would
	// cost its own problems.
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 {
		switch top := doc.Content[0]; {
		case top.Kind == yaml.SequenceNode:
			return nil, &FeedError{Problems: []string{"the feed is a bare list: put its entries under a top-level patches: key (patches:, then - id: ... for each)"}}
		case top.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(top.Content); i += 2 {
				list := top.Content[i+1]
				if list.Kind == yaml.AliasNode && list.Alias != nil {
					list = list.Alias
				}
				if top.Content[i].Value == "patches" && list.Kind == yaml.SequenceNode && len(list.Content) > MaxFeedPatches {
					return nil, &FeedError{Problems: []string{fmt.Sprintf("the feed has %d patches, more than the limit of %d; split it into several feeds", len(list.Content), MaxFeedPatches)}}
				}
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f feed
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FeedError{Problems: []string{"the feed is empty; it needs a top-level patches list"}}
		}
		omitted := 0
		if te := (*yaml.TypeError)(nil); errors.As(err, &te) && len(te.Errors) > maxProblems {
			omitted = len(te.Errors) - maxProblems
			err = &yaml.TypeError{Errors: te.Errors[:maxProblems]}
		}
		err = config.Explain(err, reflect.TypeOf(f))
		return nil, &FeedError{Problems: []string{"the feed is malformed: " + strings.TrimPrefix(err.Error(), "yaml: ")}, Omitted: omitted}
	}
	if len(f.Patches) == 0 {
		return nil, &FeedError{Problems: []string{"the feed has no patches; write them under a top-level patches list"}}
	}
	if len(f.Patches) > MaxFeedPatches { // through an alias the count above missed
		return nil, &FeedError{Problems: []string{fmt.Sprintf("the feed has %d patches, more than the limit of %d; split it into several feeds", len(f.Patches), MaxFeedPatches)}}
	}
	var problems []string
	seen := map[string]bool{}
	var out []store.Patch
	for i, e := range f.Patches {
		// The id is shown only once it is one: the feed's words reach
		// the admin's terminal.
		where := fmt.Sprintf("patch %d", i+1)
		if idRE.MatchString(e.ID) {
			where = "patch " + e.ID
		}
		bad := func(format string, args ...any) {
			problems = append(problems, where+": "+fmt.Sprintf(format, args...))
		}
		switch {
		case e.ID == "":
			bad("no id")
		case !idRE.MatchString(e.ID):
			bad("id %s is not 1 to 64 of A-Z a-z 0-9 . _ -", quote(e.ID))
		case seen[e.ID]:
			bad("appears twice in the feed")
		}
		seen[e.ID] = true
		if SeverityRank(e.Severity) < 0 {
			bad("severity %s is not one of %s", quote(e.Severity), strings.Join(Severities, ", "))
		}
		if !packageRE.MatchString(e.Package) {
			bad("package %s is not a valid package name", quote(e.Package))
		}
		// The package plugin, which installs fixed_version, refuses a
		// version it could not take (plugins/packages checkVersion):
		// refused here, not on every computer the patch is approved for.
		if e.FixedVersion == "" || len(e.FixedVersion) > 128 || strings.ContainsFunc(e.FixedVersion, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
			bad("fixed_version %s is empty, longer than 128 bytes, or has spaces or characters that are not printable", quote(e.FixedVersion))
		}
		sum := strings.TrimPrefix(e.Artifact, "sha256:")
		if !sha256RE.MatchString(sum) {
			bad("artifact %s is not a SHA-256 (64 lower-case hex digits)", quote(e.Artifact))
		}
		if len(e.Title) > MaxTitle || !printable(e.Title) {
			bad("title %s is longer than %d bytes, or has characters that are not printable (a newline, a tab, an escape)", quote(e.Title), MaxTitle)
		}
		if len(e.Supersedes) > MaxSupersedes {
			bad("supersedes %d patches, more than the limit of %d; name the patches it replaces directly (what they supersede, it supersedes too)", len(e.Supersedes), MaxSupersedes)
		} else {
			for _, s := range e.Supersedes {
				if s == e.ID {
					bad("supersedes itself")
				} else if !idRE.MatchString(s) {
					bad("supersedes %s, which is not a patch id", quote(s))
				}
			}
		}
		p := store.Patch{ID: e.ID, Title: e.Title, Severity: e.Severity, Package: e.Package, FixedVersion: e.FixedVersion,
			Artifact: sum, RebootRequired: e.RebootRequired, RollbackAllowed: e.RollbackAllowed, Supersedes: e.Supersedes, Imported: now}
		if e.Released != "" {
			t, err := time.Parse("2006-01-02", e.Released)
			if err != nil {
				bad("released %s is not a date (YYYY-MM-DD)", quote(e.Released))
			}
			p.Released = t
		}
		out = append(out, p)
	}
	if len(problems) > 0 {
		return nil, newFeedError(problems)
	}
	return out, nil
}

// CheckArtifacts refuses entries whose artifact was never uploaded.
func CheckArtifacts(ps []store.Patch, artifacts ArtifactLookup) error {
	var problems []string
	for _, p := range ps {
		_, _, ok, err := artifacts.Artifact(p.Artifact)
		if err != nil {
			return fmt.Errorf("look up artifact of patch %s: %w", p.ID, err)
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("patch %s: artifact %s… was never uploaded; push it with \"outpost artifact push\" first", p.ID, p.Artifact[:12]))
		}
	}
	if len(problems) > 0 {
		return newFeedError(problems)
	}
	return nil
}

// CheckCatalog refuses a catalog in which supersedes forms a cycle.
// Superseding a patch that is not in the catalog is allowed: feeds name
// patches retired before the catalog began.
func CheckCatalog(all map[string]store.Patch) error {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var problems []string
	var visit func(id string, path []string)
	visit = func(id string, path []string) {
		color[id] = grey
		for _, next := range all[id].Supersedes {
			if _, ok := all[next]; !ok {
				continue
			}
			switch color[next] {
			case grey:
				cycle := append(append([]string{}, path...), id, next)
				i := 0
				for cycle[i] != next {
					i++
				}
				problems = append(problems, "supersedes forms a cycle: "+strings.Join(cycle[i:], " → "))
			case white:
				visit(next, append(path, id))
			}
		}
		color[id] = black
	}
	ids := make([]string, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if color[id] == white {
			visit(id, nil)
		}
	}
	if len(problems) > 0 {
		return newFeedError(problems)
	}
	return nil
}

// Superseded returns the ids, among ids, that another of ids supersedes
// (directly or through a chain in the catalog).
//
// It runs at every signing of every office's policy, over the whole
// catalog, so it walks the supersedes graph once from all of ids
// together rather than once from each (which costs the square of a
// chain's length): each patch records the first two of ids that reach
// it, and passes on only what it records, so it is visited at most twice.
// Two are enough: a patch is superseded when one of ids other than itself
// reaches it, and a patch that recorded two has one of those.
func Superseded(ids []string, catalog map[string]store.Patch) map[string]bool {
	in := map[string]bool{}
	for _, id := range ids {
		in[id] = true
	}
	type step struct{ patch, from string }
	var stack []step
	for id := range in {
		for _, s := range catalog[id].Supersedes {
			stack = append(stack, step{s, id})
		}
	}
	reached := map[string][]string{} // patch → the first two of ids that reach it
	for len(stack) > 0 {
		st := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		r := reached[st.patch]
		if len(r) == 2 || (len(r) == 1 && r[0] == st.from) {
			continue
		}
		reached[st.patch] = append(r, st.from)
		for _, s := range catalog[st.patch].Supersedes {
			stack = append(stack, step{s, st.from})
		}
	}
	out := map[string]bool{}
	for p, from := range reached {
		if in[p] && (from[0] != p || len(from) == 2) {
			out[p] = true
		}
	}
	return out
}
