// Package policy compiles the policy YAML an admin applies to an office into
// the wire items that agents receive. It checks everything it can before a
// revision is signed (fields, types, names, duplicates, that every artifact
// was uploaded) and reports each problem with the line it is on, so the admin
// API can refuse a bad policy with 400.
//
// It does not store, sign, revision or push policy; see the coordinator's
// store and API for that.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/pkg/didyoumean"
	"github.com/outposthq/outpost/pkg/wire"
)

// Limits on what an admin may apply. The API limits request bodies to the
// same size; the item limit keeps a signed policy small enough to gossip.
const (
	MaxSize  = 1 << 20 // bytes of YAML
	MaxItems = 10000
)

// maxProblems caps how many problems one error lists: enough to fix a policy
// in one go, few enough for an HTTP error body.
const maxProblems = 50

// ArtifactLookup tells whether an artifact was uploaded and what it is.
// ok is false for an artifact that was never uploaded; err is for failures
// of the lookup itself.
type ArtifactLookup interface {
	Artifact(sha256 string) (size int64, name string, ok bool, err error)
}

// ChunkLookup, when the ArtifactLookup has it, gives an artifact's chunk
// size and chunk hashes (concatenated), which the compiler puts into the
// policy so that they are signed with it; none for an artifact uploaded
// before chunks existed.
type ChunkLookup interface {
	Chunks(sha256 string) (chunkSize int64, hashes []byte, err error)
}

// Problem is one thing wrong with a policy. Line and Column are 1-based;
// zero when the problem concerns the whole input.
type Problem struct {
	Line    int
	Column  int
	Message string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return p.Message
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Message)
}

// Error is a policy the admin must fix: every problem found, in input order.
// The admin API answers it with 400; any other error from Compile is the
// coordinator's own failure.
type Error struct {
	Problems []Problem
	// Omitted counts problems found beyond those listed.
	Omitted int
}

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	if e.Omitted > 0 {
		lines = append(lines, fmt.Sprintf("(and %d more problems)", e.Omitted))
	}
	return strings.Join(lines, "\n")
}

// Kinds an item may have; only package is implemented by the agents' plugins.
const (
	KindPackage  = "package"
	KindPatch    = "patch"
	KindRegistry = "registry"
)

var (
	kinds         = []string{KindPackage, KindPatch, KindRegistry}
	topFields     = []string{"items", "defaults"}
	packageFields = []string{"kind", "name", "version", "artifact", "state", "prefix", "window", "reboot"}

	packageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

const (
	maxVersionLen = 128
	maxPrefixLen  = 1024
)

// Compile parses src and returns its items in the order they appear, each
// with the size and name of its artifact from artifacts. A policy with
// problems gives an *Error listing all of them; a failing lookup gives a
// wrapped error of its own.
func Compile(src []byte, artifacts ArtifactLookup) ([]*wire.Item, error) {
	if len(src) > MaxSize {
		return nil, &Error{Problems: []Problem{{Message: fmt.Sprintf(
			"the policy is %d bytes, more than the limit of %d (1 MiB); remove items or split the office",
			len(src), MaxSize)}}}
	}
	root, perr := parse(src)
	if perr != nil {
		return nil, &Error{Problems: []Problem{*perr}}
	}
	c := &compiler{artifacts: artifacts, found: map[string]artifactInfo{}}
	return c.finish(c.compile(root))
}

// finish turns the problems found into an *Error, sorted by line.
func (c *compiler) finish(items []*wire.Item, err error) ([]*wire.Item, error) {
	if err != nil {
		return nil, err
	}
	if len(c.problems) > 0 {
		// Item-level problems (a missing field) are found after the field
		// problems below them; the admin reads top to bottom.
		sort.SliceStable(c.problems, func(i, j int) bool { return c.problems[i].Line < c.problems[j].Line })
		e := &Error{Problems: c.problems}
		if len(e.Problems) > maxProblems {
			e.Omitted = len(e.Problems) - maxProblems
			e.Problems = e.Problems[:maxProblems]
		}
		return nil, e
	}
	return items, nil
}

// parse decodes the one YAML document in src into its top node.
func parse(src []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{Message: "the policy is empty; write `items: []` for a policy that manages nothing"}
		}
		return nil, syntaxProblem(err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxProblem(err)
		}
		// A trailing "---" with nothing after it is harmless.
		if !isEmptyDocument(&next) {
			return nil, &Problem{Line: next.Line, Column: next.Column, Message: "the policy has more than one YAML document; put every item in the items list of one document"}
		}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Problem{Line: doc.Line, Column: doc.Column, Message: "the policy is not a YAML mapping; it needs a top-level items list"}
	}
	return doc.Content[0], nil
}

func isEmptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return len(doc.Content) == 1 && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == "" && n.Style == 0
}

// yamlLineRE picks the line out of yaml.v3's syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner). yaml.v3 v3.0.1 numbers their lines from 0 and points at the start
// of the enclosing list or mapping rather than at the fault.
var yamlParserErrors = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

func syntaxProblem(err error) *Problem {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return &Problem{Message: "the policy is not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	msg = m[2]
	if contains(yamlParserErrors, msg) {
		line++
		msg += " in the list or mapping that starts on this line; check the indentation and brackets below it"
	}
	return &Problem{Line: line, Message: "the policy is not valid YAML: " + msg}
}

type artifactInfo struct {
	size      int64
	name      string
	ok        bool
	chunkSize int64
	chunks    []byte
}

type compiler struct {
	artifacts ArtifactLookup
	found     map[string]artifactInfo // lookups already made, by hash
	problems  []Problem
	// extra are top-level fields besides items and defaults that this
	// compile accepts (a named policy's targets and priority, scope.go);
	// their values are left in top.
	extra []string
	top   map[string]*yaml.Node
}

func (c *compiler) problem(n *yaml.Node, format string, args ...any) {
	c.problems = append(c.problems, Problem{Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...)})
}

func (c *compiler) compile(root *yaml.Node) ([]*wire.Item, error) {
	if root.Kind != yaml.MappingNode {
		c.problem(root, "the policy must be a mapping with a top-level items list, not %s", describe(root))
		return nil, nil
	}
	fields := c.fields(root, "the policy", append(slices.Clip(topFields), c.extra...))
	c.top = fields
	list, ok := fields["items"]
	if !ok {
		if len(c.problems) == 0 {
			c.problem(root, "the policy has no items list; write `items: []` for a policy that manages nothing")
		}
		return nil, nil
	}
	list = c.deref(list)
	if list == nil {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		c.problem(list, "items must be a list of items, not %s", describe(list))
		return nil, nil
	}
	if len(list.Content) > MaxItems {
		c.problem(list.Content[MaxItems], "the policy has %d items, more than the limit of %d; remove items or split the office", len(list.Content), MaxItems)
		return nil, nil
	}

	items := make([]*wire.Item, 0, len(list.Content))
	firstLine := map[string]int{} // item id -> line it first appears on
	for _, n := range list.Content {
		item, err := c.item(n)
		if err != nil {
			return nil, err
		}
		if item == nil {
			continue
		}
		if line, dup := firstLine[itemKey(item)]; dup {
			c.problem(n, "duplicate item %s (first on line %d); each kind and name may appear once", item.Id, line)
			continue
		}
		firstLine[itemKey(item)] = n.Line
		items = append(items, item)
	}
	if d, ok := fields["defaults"]; ok {
		c.defaults(d, items)
	}
	return items, nil
}

// item compiles one entry of the items list; nil when it has problems.
func (c *compiler) item(n *yaml.Node) (*wire.Item, error) {
	n = c.deref(n)
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		c.problem(n, "an item must be a mapping with kind, name and so on, not %s", describe(n))
		return nil, nil
	}
	before := len(c.problems)

	kindNode := c.findField(n, "kind")
	if kindNode == nil {
		c.fields(n, "item", packageFields) // still report unknown and repeated fields
		c.problem(n, "the item has no kind; add kind: package")
		return nil, nil
	}
	kind, ok := c.str(kindNode, "kind")
	if !ok {
		return nil, nil
	}
	switch kind {
	case KindPackage:
	case KindRegistry:
		return c.registryItem(n, before)
	case KindPatch:
		return c.patchItem(n, before)
	default:
		c.problem(kindNode, "unknown kind %q%s", kind, suggest(kind, kinds, "kinds"))
		return nil, nil
	}
	return c.packageItem(n, before)
}

func (c *compiler) packageItem(n *yaml.Node, before int) (*wire.Item, error) {
	fields := c.fields(n, "item", packageFields)
	spec := &wire.PackageSpec{}
	item := &wire.Item{Kind: KindPackage, State: wire.State_STATE_PRESENT}

	if v, ok := fields["name"]; !ok {
		c.problem(n, "the item has no name; add name: <package name>")
	} else if s, ok := c.str(v, "name"); ok {
		if packageNameRE.MatchString(s) {
			spec.Name = s
		} else {
			c.problem(v, "name %q is not a valid package name; use 1 to 64 of a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit", s)
		}
	}

	// Which fields are required depends on the state; with a bad state
	// only the state is reported.
	present := true
	if v, ok := fields["state"]; ok {
		present = false
		if s, ok := c.str(v, "state"); ok {
			switch s {
			case "present":
				present = true
			case "absent":
				item.State = wire.State_STATE_ABSENT
			default:
				c.problem(v, "state %q is not valid; use present or absent", s)
			}
		}
	}

	if v, ok := fields["version"]; !ok {
		if present {
			c.problem(n, "the item has no version; add version: \"<version>\" (or state: absent to remove the package)")
		}
	} else if s, ok := c.str(v, "version"); ok {
		if msg := checkVersion(s); msg != "" {
			c.problem(v, "%s", msg)
		} else {
			spec.Version = s
		}
	}

	if v, ok := fields["prefix"]; ok {
		if s, ok := c.str(v, "prefix"); ok {
			if msg := checkPrefix(s); msg != "" {
				c.problem(v, "%s", msg)
			} else {
				spec.Prefix = s
			}
		}
	}

	if v, ok := fields["artifact"]; !ok {
		if present {
			c.problem(n, "the item has no artifact; add artifact: <sha256 of the package>, as shown by \"outpost artifact push\"")
		}
	} else if s, ok := c.str(v, "artifact"); ok {
		a, err := c.artifact(v, s)
		if err != nil {
			return nil, err
		}
		item.Artifact = a
	}

	c.schedule(fields, item)
	if len(c.problems) > before {
		return nil, nil
	}
	item.Id = KindPackage + "/" + spec.Name
	item.Spec = &wire.Item_Package{Package: spec}
	return item, nil
}

// artifact checks a hash and looks it up; nil when there is a problem.
func (c *compiler) artifact(n *yaml.Node, s string) (*wire.Artifact, error) {
	sum := strings.TrimPrefix(s, "sha256:")
	if !sha256RE.MatchString(sum) {
		c.problem(n, "artifact %q is not a SHA-256; use the 64 lower-case hex digits shown by \"outpost artifact push\"", truncate(s, 80))
		return nil, nil
	}
	info, seen := c.found[sum]
	if !seen {
		size, name, ok, err := c.artifacts.Artifact(sum)
		if err != nil {
			return nil, fmt.Errorf("look up artifact %s: %w", sum, err)
		}
		info = artifactInfo{size: size, name: name, ok: ok}
		if cl, has := c.artifacts.(ChunkLookup); has && ok {
			if info.chunkSize, info.chunks, err = cl.Chunks(sum); err != nil {
				return nil, fmt.Errorf("look up chunks of artifact %s: %w", sum, err)
			}
		}
		c.found[sum] = info
	}
	if !info.ok {
		c.problem(n, "artifact %s… was never uploaded; push it with \"outpost artifact push\"", sum[:12])
		return nil, nil
	}
	return &wire.Artifact{Sha256: sum, Size: info.size, Name: info.name, ChunkSize: info.chunkSize, ChunkSha256: info.chunks}, nil
}

func checkVersion(s string) string {
	switch {
	case s == "":
		return "version is empty; write the package version, for example version: \"1.0.0\""
	case len(s) > maxVersionLen:
		return fmt.Sprintf("version is %d characters long; the limit is %d", len(s), maxVersionLen)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("version %q has spaces or control characters; write it without them", s)
	}
	return ""
}

func checkPrefix(s string) string {
	switch {
	case len(s) > maxPrefixLen:
		return fmt.Sprintf("prefix is %d characters long; the limit is %d", len(s), maxPrefixLen)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("prefix %q has control characters; write a plain absolute path such as /opt/hello", s)
	case !strings.HasPrefix(s, "/"):
		return fmt.Sprintf("prefix %q is not an absolute path; write one such as /opt/hello", s)
	case strings.Contains(s, "\\"):
		return fmt.Sprintf("prefix %q has a backslash; separate directories with /", s)
	case hasDotDot(s):
		return fmt.Sprintf("prefix %q has a .. element; write the directory it means", s)
	case path.Clean(s) != s:
		return fmt.Sprintf("prefix %q is not a clean path; write %s", s, path.Clean(s))
	case s == "/":
		return "prefix / would install over the whole file system; use a directory such as /opt/hello"
	}
	return ""
}

func hasDotDot(s string) bool {
	for _, el := range strings.Split(s, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// fields returns the values of a mapping's known fields by name, reporting
// unknown, repeated and non-scalar keys. what names the mapping in messages.
func (c *compiler) fields(n *yaml.Node, what string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	keyLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			c.problem(k, "%s has a key that is not a plain name; use one of %s", what, strings.Join(known, ", "))
			continue
		}
		name := k.Value
		if line, dup := keyLine[name]; dup {
			c.problem(k, "field %q appears twice in %s (first on line %d)", name, what, line)
			continue
		}
		keyLine[name] = k.Line
		if !contains(known, name) {
			c.problem(k, "unknown field %q in %s%s", truncate(name, 40), what, suggest(name, known, "fields"))
			continue
		}
		out[name] = v
	}
	return out
}

// findField returns the value of the first key called name, or nil.
func (c *compiler) findField(n *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == name {
			return n.Content[i+1]
		}
	}
	return nil
}

// deref refuses aliases: resolving them would let a small policy expand
// into a huge one, and a policy is clearer written out.
func (c *compiler) deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		c.problem(n, "YAML aliases (*%s) are not supported in a policy; write the value out", truncate(n.Value, 40))
		return nil
	}
	return n
}

// str returns a scalar field as written. Numbers count as text so that an
// unquoted version such as 1.10 keeps its digits; booleans, nulls, lists and
// mappings are refused.
func (c *compiler) str(n *yaml.Node, field string) (string, bool) {
	if n = c.deref(n); n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		c.problem(n, "%s must be a string, not %s", field, describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		return n.Value, true
	case "!!null":
		c.problem(n, "%s has no value; write one or remove the field", field)
	default:
		c.problem(n, "%s must be a string, not %s; put it in quotes if you mean the text %q", field, describe(n), truncate(n.Value, 40))
	}
	return "", false
}

// describe names what a node is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return "the text " + strconv.Quote(truncate(n.Value, 40))
	case "!!int", "!!float":
		return "the number " + truncate(n.Value, 40)
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "an empty value"
	case "!!timestamp":
		return "the timestamp " + truncate(n.Value, 40)
	case "!!binary":
		return "binary data"
	}
	return "a value tagged " + truncate(n.ShortTag(), 40)
}

// suggest returns " (did you mean "x"?)" for a near miss, or the list of
// valid words otherwise.
func suggest(got string, valid []string, what string) string {
	if h := didyoumean.Hint(got, valid); h != "" {
		return h
	}
	return fmt.Sprintf("; the %s are %s", what, strings.Join(valid, ", "))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// truncate keeps user input in messages short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
