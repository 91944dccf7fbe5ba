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
	"strings"
	"time"
	"unicode"

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

// MaxFeed bounds a feed's size.
const MaxFeed = 4 << 20

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

// FeedError is a feed the admin must fix; nothing of it was imported.
type FeedError struct{ Problems []string }

func (e *FeedError) Error() string {
	return "the feed was not imported: " + strings.Join(e.Problems, "; ")
}

// ArtifactLookup tells whether an artifact was uploaded.
type ArtifactLookup interface {
	Artifact(sha256 string) (size int64, name string, ok bool, err error)
}

// Parse reads a feed, YAML or JSON, checking each entry on its own. now
// stamps the entries' import time.
func Parse(data []byte, now time.Time) ([]store.Patch, error) {
	if len(data) > MaxFeed {
		return nil, &FeedError{[]string{fmt.Sprintf("the feed is %d bytes, more than the limit of %d", len(data), MaxFeed)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f feed
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FeedError{[]string{"the feed is empty; it needs a top-level patches list"}}
		}
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.SequenceNode {
			return nil, &FeedError{[]string{"the feed is a bare list: put its entries under a top-level patches: key (patches:, then - id: ... for each)"}}
		}
		err = config.Explain(err, reflect.TypeOf(f))
		return nil, &FeedError{[]string{"the feed is malformed: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(f.Patches) == 0 {
		return nil, &FeedError{[]string{"the feed has no patches; write them under a top-level patches list"}}
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
			bad("id %q is not 1 to 64 of A-Z a-z 0-9 . _ -", e.ID)
		case seen[e.ID]:
			bad("appears twice in the feed")
		}
		seen[e.ID] = true
		if SeverityRank(e.Severity) < 0 {
			bad("severity %q is not one of %s", e.Severity, strings.Join(Severities, ", "))
		}
		if !packageRE.MatchString(e.Package) {
			bad("package %q is not a valid package name", e.Package)
		}
		// The package plugin, which installs fixed_version, refuses a
		// version it could not take (plugins/packages checkVersion):
		// refused here, not on every computer the patch is approved for.
		if e.FixedVersion == "" || len(e.FixedVersion) > 128 || strings.ContainsFunc(e.FixedVersion, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
			bad("fixed_version %q is empty, longer than 128 bytes, or has spaces or characters that are not printable", e.FixedVersion)
		}
		sum := strings.TrimPrefix(e.Artifact, "sha256:")
		if !sha256RE.MatchString(sum) {
			bad("artifact %q is not a SHA-256 (64 lower-case hex digits)", e.Artifact)
		}
		for _, s := range e.Supersedes {
			if s == e.ID {
				bad("supersedes itself")
			} else if !idRE.MatchString(s) {
				bad("supersedes %q, which is not a patch id", s)
			}
		}
		p := store.Patch{ID: e.ID, Title: e.Title, Severity: e.Severity, Package: e.Package, FixedVersion: e.FixedVersion,
			Artifact: sum, RebootRequired: e.RebootRequired, RollbackAllowed: e.RollbackAllowed, Supersedes: e.Supersedes, Imported: now}
		if e.Released != "" {
			t, err := time.Parse("2006-01-02", e.Released)
			if err != nil {
				bad("released %q is not a date (YYYY-MM-DD)", e.Released)
			}
			p.Released = t
		}
		out = append(out, p)
	}
	if len(problems) > 0 {
		return nil, &FeedError{problems}
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
		return &FeedError{problems}
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
		return &FeedError{problems}
	}
	return nil
}

// Superseded returns the ids, among ids, that another of ids supersedes
// (directly or through a chain in the catalog).
func Superseded(ids []string, catalog map[string]store.Patch) map[string]bool {
	in := map[string]bool{}
	for _, id := range ids {
		in[id] = true
	}
	out := map[string]bool{}
	for _, id := range ids {
		seen := map[string]bool{}
		stack := append([]string{}, catalog[id].Supersedes...)
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[s] {
				continue
			}
			seen[s] = true
			if in[s] && s != id {
				out[s] = true
			}
			stack = append(stack, catalog[s].Supersedes...)
		}
	}
	return out
}
