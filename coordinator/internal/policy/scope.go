package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/pkg/wire"
)

// Targets say which computers a named policy applies to: a computer is
// targeted when any one entry matches it.
type Targets struct {
	Offices []string `json:"offices"`
	// Agents are member ids (ag-...) or hostnames (any case; a short name
	// also matches the first label of a full one).
	Agents []string `json:"agents"`
	// Labels are "key" (the label, whatever its value) or "key=value".
	Labels []string `json:"labels"`
}

// Named is a compiled named policy: what it targets, its priority among
// policies of the same level, and its items.
type Named struct {
	Targets  Targets
	Priority int
	Items    []*wire.Item
}

// Limits of a named policy's scope.
const (
	MaxTargets  = 1000
	MaxPriority = 1000
)

var (
	targetFields = []string{"offices", "agents", "labels"}
	officeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// A key ends with a letter or digit: "key-" removes a label in the CLI.
	labelKeyRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9._/-]{0,63}$`)
	agentRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
)

// CheckLabel says what is wrong with a label ("key" or "key=value"), or "".
func CheckLabel(s string) string {
	k, v, _ := strings.Cut(s, "=")
	if !labelKeyRE.MatchString(k) {
		return fmt.Sprintf("label %q: the key is 1-63 of a-z, 0-9, '.', '_', '/', '-', starting and ending with a letter or digit", truncate(s, 80))
	}
	if !labelValueRE.MatchString(v) {
		return fmt.Sprintf("label %q: the value is at most 63 of A-Z, a-z, 0-9, '.', '_', '/', '-'", truncate(s, 80))
	}
	return ""
}

// CompileNamed compiles a named policy: the items and defaults of an
// office's policy, plus
//
//	targets: {offices: [berlin], agents: [ag-1f2e, pc-17], labels: [kiosk, "floor=3"]}
//	priority: 10   # optional, -1000..1000, default 0
func CompileNamed(src []byte, artifacts ArtifactLookup) (*Named, error) {
	if len(src) > MaxSize {
		return nil, &Error{Problems: []Problem{{Message: fmt.Sprintf(
			"the policy is %d bytes, more than the limit of %d (1 MiB); remove items or split it", len(src), MaxSize)}}}
	}
	root, perr := parse(src)
	if perr != nil {
		return nil, &Error{Problems: []Problem{*perr}}
	}
	c := &compiler{artifacts: artifacts, found: map[string]artifactInfo{}, extra: []string{"targets", "priority"}}
	items, err := c.compile(root)
	out := &Named{Items: items}
	if err == nil && c.top != nil {
		c.scope(root, out)
	}
	if out.Items, err = c.finish(items, err); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *compiler) scope(root *yaml.Node, out *Named) {
	if v, ok := c.top["priority"]; ok {
		if v = c.deref(v); v != nil {
			n, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil || n < -MaxPriority || n > MaxPriority {
				c.problem(v, "priority must be a whole number from %d to %d, not %s", -MaxPriority, MaxPriority, describe(v))
			} else {
				out.Priority = n
			}
		}
	}
	t, ok := c.top["targets"]
	if !ok {
		c.problem(root, "the policy has no targets; add targets: with offices, agents or labels (or apply it as one office's own policy: outpost policy apply --office NAME)")
		return
	}
	if t = c.deref(t); t == nil {
		return
	}
	if t.Kind != yaml.MappingNode {
		c.problem(t, "targets must be a mapping with offices, agents or labels, not %s", describe(t))
		return
	}
	before := len(c.problems)
	fields := c.fields(t, "targets", targetFields)
	out.Targets.Offices = c.targetList(fields["offices"], "offices", func(s string) string {
		if !officeNameRE.MatchString(s) {
			return fmt.Sprintf("office %q is not an office name", truncate(s, 80))
		}
		return ""
	})
	out.Targets.Agents = c.targetList(fields["agents"], "agents", func(s string) string {
		if !agentRE.MatchString(s) {
			return fmt.Sprintf("agent %q is neither a member id nor a hostname", truncate(s, 80))
		}
		return ""
	})
	out.Targets.Labels = c.targetList(fields["labels"], "labels", CheckLabel)
	n := len(out.Targets.Offices) + len(out.Targets.Agents) + len(out.Targets.Labels)
	switch {
	case n == 0 && len(c.problems) == before:
		c.problem(t, "targets names no office, agent or label; the policy would apply to nothing")
	case n > MaxTargets:
		c.problem(t, "targets has %d entries, more than the limit of %d; label the computers and target the label", n, MaxTargets)
	}
}

// targetList reads one list of targets; check says what is wrong with an
// entry. Duplicates are dropped silently: they mean the same.
func (c *compiler) targetList(n *yaml.Node, field string, check func(string) string) []string {
	if n == nil {
		return nil
	}
	if n = c.deref(n); n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		c.problem(n, "targets.%s must be a list, not %s", field, describe(n))
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range n.Content {
		s, ok := c.str(e, field)
		if !ok {
			continue
		}
		if msg := check(s); msg != "" {
			c.problem(e, "%s", msg)
			continue
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Level is how specifically a policy targets a computer. A more specific
// level wins over a less specific one, whatever the priorities.
type Level int

// The levels, least specific first.
const (
	LevelOffice Level = 1
	LevelLabel  Level = 2
	LevelAgent  Level = 3
)

func (l Level) String() string {
	switch l {
	case LevelOffice:
		return "office"
	case LevelLabel:
		return "label"
	case LevelAgent:
		return "agent"
	}
	return "level " + strconv.Itoa(int(l))
}

// MarshalText makes levels read as words in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Source is one policy that applies to one computer, at the level of its
// most specific target that matches the computer.
type Source struct {
	Policy   string
	Level    Level
	Priority int
	Items    []*wire.Item
}

// Origin says which policy an effective item came from, and which
// policies' versions of it lost.
type Origin struct {
	Policy     string   `json:"policy"`
	Level      Level    `json:"level"`
	Priority   int      `json:"priority"`
	Overridden []string `json:"overridden,omitempty"`
}

// Conflict is two or more policies that apply to one computer at the same
// level and priority and set one item differently.
type Conflict struct {
	Item     string   `json:"item"`
	Level    Level    `json:"level"`
	Priority int      `json:"priority"`
	Policies []string `json:"policies"` // sorted
}

// Merged is a computer's effective policy.
type Merged struct {
	// Items in a stable order: each item where it first appears, reading
	// the policies from the least specific to the most.
	Items     []*wire.Item
	Origins   map[string]Origin // by item id
	Conflicts []Conflict        // by item id
}

// Merge computes the effective items of a computer from the policies that
// apply to it. Precedence, highest first: the level (agent, label,
// office), then the priority, then — only between policies that set an
// item identically — the policy name in alphabetical order. An item set
// differently by policies of the same level and priority is a conflict;
// conflicts are reported at every level, even where a higher policy
// overrides them, so that removing that policy can never expose one.
// Where there is a conflict the alphabetically first policy is taken, so
// the result is still deterministic.
func Merge(sources []Source) Merged {
	srcs := append([]Source(nil), sources...)
	sort.SliceStable(srcs, func(i, j int) bool {
		a, b := srcs[i], srcs[j]
		if a.Level != b.Level {
			return a.Level < b.Level
		}
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Policy < b.Policy
	})
	type entry struct {
		src  int
		item *wire.Item
	}
	var order []string
	byID := map[string][]entry{}
	for i, s := range srcs {
		for _, it := range s.Items {
			// By itemKey: one registry value written in two cases is one item.
			key := itemKey(it)
			if _, seen := byID[key]; !seen {
				order = append(order, key)
			}
			byID[key] = append(byID[key], entry{i, it})
		}
	}
	out := Merged{Origins: map[string]Origin{}}
	for _, key := range order {
		es := byID[key]
		// Tiers of equal level and priority; es is sorted by them, then by name.
		var winner entry
		for start := 0; start < len(es); {
			end := start + 1
			for end < len(es) && srcs[es[end].src].Level == srcs[es[start].src].Level && srcs[es[end].src].Priority == srcs[es[start].src].Priority {
				end++
			}
			tier := es[start:end]
			var differ []string
			for _, e := range tier[1:] {
				if !proto.Equal(e.item, tier[0].item) {
					differ = append(differ, srcs[e.src].Policy)
				}
			}
			if len(differ) > 0 {
				names := []string{}
				for _, e := range tier {
					names = append(names, srcs[e.src].Policy)
				}
				sort.Strings(names)
				names = compactStrings(names)
				s := srcs[tier[0].src]
				out.Conflicts = append(out.Conflicts, Conflict{Item: tier[0].item.GetId(), Level: s.Level, Priority: s.Priority, Policies: names})
			}
			winner = tier[0] // the alphabetically first of the highest tier
			start = end
		}
		ws := srcs[winner.src]
		o := Origin{Policy: ws.Policy, Level: ws.Level, Priority: ws.Priority}
		for _, e := range es {
			if s := srcs[e.src]; s.Level != ws.Level || s.Priority != ws.Priority {
				o.Overridden = append(o.Overridden, s.Policy)
			}
		}
		out.Origins[winner.item.GetId()] = o
		out.Items = append(out.Items, winner.item)
	}
	sort.SliceStable(out.Conflicts, func(i, j int) bool { return out.Conflicts[i].Item < out.Conflicts[j].Item })
	return out
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// SameItems reports whether two item lists are the same, in the same order.
func SameItems(a, b []*wire.Item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// SameContent reports whether two compiled policies ask the same of the
// members that hold them: equal in everything but their revision and the
// time they were issued (the office, the agent a variant is for, items,
// variant lists, permission lists, token keys...). An apply that would
// sign the same content as the current revision needs no new one.
func SameContent(a, b *wire.Policy) bool {
	if a == nil || b == nil {
		return a == b
	}
	a, b = proto.Clone(a).(*wire.Policy), proto.Clone(b).(*wire.Policy)
	a.Revision, a.IssuedUnix = 0, 0
	b.Revision, b.IssuedUnix = 0, 0
	return proto.Equal(a, b)
}
