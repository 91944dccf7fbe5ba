package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/wire"
)

var (
	hashHello = strings.Repeat("a1", 32)
	hashTools = strings.Repeat("b2", 32)
	hashGone  = "3f2a" + strings.Repeat("0", 60) // never uploaded
)

// uploaded is an ArtifactLookup over a fixed set, counting its calls.
type uploaded struct {
	artifacts map[string]artifactInfo
	calls     int
	err       error
}

func newUploaded() *uploaded {
	return &uploaded{artifacts: map[string]artifactInfo{
		hashHello: {size: 1234, name: "hello-1.0.0.tar.gz", ok: true},
		hashTools: {size: 99, name: "tools.tar.gz", ok: true},
	}}
}

func (u *uploaded) Artifact(sha256 string) (int64, string, bool, error) {
	u.calls++
	if u.err != nil {
		return 0, "", false, u.err
	}
	a := u.artifacts[sha256]
	return a.size, a.name, a.ok, nil
}

// lines joins its arguments into a YAML document whose line N is lines[N-1],
// so that the expected line numbers can be read off the test table.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestCompile(t *testing.T) {
	src := lines(
		"# Berlin office",
		"items:",
		"  - kind: package",
		"    name: hello",
		`    version: "1.0.0"`,
		"    artifact: "+hashHello,
		"  - kind: package",
		"    name: tools",
		"    version: 1.10", // unquoted: must keep its digits
		"    artifact: sha256:"+hashTools,
		"    state: present",
		"    prefix: /srv/tools",
		"  - kind: package",
		"    name: old-thing",
		"    state: absent",
		"  - kind: package",
		"    name: g++.compat_2",
		"    version: 2.0-rc1",
		"    artifact: "+hashHello, // the same artifact twice is fine
	)
	lookup := newUploaded()
	got, err := Compile([]byte(src), lookup)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	want := []*wire.Item{
		{
			Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT,
			Artifact: &wire.Artifact{Sha256: hashHello, Size: 1234, Name: "hello-1.0.0.tar.gz"},
			Spec:     &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}},
		},
		{
			Id: "package/tools", Kind: "package", State: wire.State_STATE_PRESENT,
			Artifact: &wire.Artifact{Sha256: hashTools, Size: 99, Name: "tools.tar.gz"},
			Spec:     &wire.Item_Package{Package: &wire.PackageSpec{Name: "tools", Version: "1.10", Prefix: "/srv/tools"}},
		},
		{
			Id: "package/old-thing", Kind: "package", State: wire.State_STATE_ABSENT,
			Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "old-thing"}},
		},
		{
			Id: "package/g++.compat_2", Kind: "package", State: wire.State_STATE_PRESENT,
			Artifact: &wire.Artifact{Sha256: hashHello, Size: 1234, Name: "hello-1.0.0.tar.gz"},
			Spec:     &wire.Item_Package{Package: &wire.PackageSpec{Name: "g++.compat_2", Version: "2.0-rc1"}},
		},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d items, want %d:\n%s", len(got), len(want), format(got))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("item %d:\n got %s\nwant %s", i, prototext.Format(got[i]), prototext.Format(want[i]))
		}
	}
	if lookup.calls != 2 {
		t.Errorf("looked up artifacts %d times, want once per distinct hash (2)", lookup.calls)
	}
}

func TestCompileEmptyList(t *testing.T) {
	for _, src := range []string{"items: []\n", "items: []  # nothing managed\n---\n"} {
		t.Run(src, func(t *testing.T) {
			got, err := Compile([]byte(src), newUploaded())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if len(got) != 0 {
				t.Fatalf("got %d items, want none", len(got))
			}
		})
	}
}

func format(items []*wire.Item) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(prototext.Format(it))
		b.WriteString("\n")
	}
	return b.String()
}

func TestCompileProblems(t *testing.T) {
	pkg := func(extra ...string) string {
		return lines(append([]string{
			"items:",
			"  - kind: package",
			"    name: hello",
			`    version: "1.0.0"`,
			"    artifact: " + hashHello,
		}, extra...)...)
	}
	tests := []struct {
		name string
		src  string
		// want is every expected problem as formatted, in order.
		want []string
	}{
		{
			name: "misspelt field",
			src:  pkg("    verison: 2"),
			want: []string{`line 6: unknown field "verison" in item (did you mean "version"?)`},
		},
		{
			name: "unknown field far from any",
			src:  pkg("    colour: blue"),
			want: []string{`line 6: unknown field "colour" in item; the fields are kind, name, version, artifact, state, prefix, window, reboot`},
		},
		{
			name: "unknown top-level field",
			src:  lines("items: []", "offices: [berlin]"),
			want: []string{`line 2: unknown field "offices" in the policy; the fields are items, defaults`},
		},
		{
			name: "misspelt items",
			src:  lines("item:", "  - kind: package"),
			want: []string{`line 1: unknown field "item" in the policy (did you mean "items"?)`},
		},
		{
			name: "repeated field",
			src:  pkg(`    version: "2.0"`),
			want: []string{`line 6: field "version" appears twice in item (first on line 4)`},
		},
		{
			name: "name is a list",
			src:  lines("items:", "  - kind: package", "    name: [a, b]", `    version: "1"`, "    artifact: "+hashHello),
			want: []string{`line 3: name must be a string, not a list`},
		},
		{
			name: "version is a boolean",
			src:  lines("items:", "  - kind: package", "    name: hello", "    version: true", "    artifact: "+hashHello),
			want: []string{`line 4: version must be a string, not the boolean true; put it in quotes if you mean the text "true"`},
		},
		{
			name: "version is empty",
			src:  lines("items:", "  - kind: package", "    name: hello", "    version:", "    artifact: "+hashHello),
			want: []string{`line 4: version has no value; write one or remove the field`},
		},
		{
			name: "version is an empty string",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: ""`, "    artifact: "+hashHello),
			want: []string{`line 4: version is empty; write the package version, for example version: "1.0.0"`},
		},
		{
			name: "version with a space",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: "1.0 beta"`, "    artifact: "+hashHello),
			want: []string{`line 4: version "1.0 beta" has spaces or control characters; write it without them`},
		},
		{
			name: "no kind",
			src:  lines("items:", "  - name: hello", `    version: "1"`),
			want: []string{`line 2: the item has no kind; add kind: package`},
		},
		{
			name: "no kind and an unknown field",
			src:  lines("items:", "  - name: hello", "    knd: package"),
			want: []string{
				`line 2: the item has no kind; add kind: package`,
				`line 3: unknown field "knd" in item (did you mean "kind"?)`,
			},
		},
		{
			name: "kind patch",
			src:  lines("items:", "  - kind: patch", "    id: KB5005565"),
			want: []string{`line 3: this coordinator has no patch catalog`},
		},
		{
			name: "kind registry",
			src:  lines("items:", "  - kind: package", "    name: a", "    state: absent", "  - kind: registry"),
			want: []string{
				`line 5: the item has no path; add path: /etc/sysctl.d/99-outpost.conf (a settings file) or HKLM\SOFTWARE\Vendor (a registry key)`,
				`line 5: the item has no name; add name: <the value or setting to manage>`,
				`line 5: the item has no value; add value: <what to set>`,
			},
		},
		{
			name: "misspelt kind",
			src:  lines("items:", "  - kind: pakage"),
			want: []string{`line 2: unknown kind "pakage" (did you mean "package"?)`},
		},
		{
			name: "unknown kind",
			src:  lines("items:", "  - kind: service"),
			want: []string{`line 2: unknown kind "service"; the kinds are package, patch, registry`},
		},
		{
			name: "no name",
			src:  lines("items:", "  - kind: package", `    version: "1"`, "    artifact: "+hashHello),
			want: []string{`line 2: the item has no name; add name: <package name>`},
		},
		{
			name: "bad name",
			src:  lines("items:", "  - kind: package", "    name: Hello World", `    version: "1"`, "    artifact: "+hashHello),
			want: []string{`line 3: name "Hello World" is not a valid package name; use 1 to 64 of a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit`},
		},
		{
			name: "name too long",
			src:  lines("items:", "  - kind: package", "    name: "+strings.Repeat("x", 65), "    state: absent"),
			want: []string{`line 3: name "` + strings.Repeat("x", 65) + `" is not a valid package name; use 1 to 64 of a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit`},
		},
		{
			name: "present without version and artifact",
			src:  lines("items:", "  - kind: package", "    name: hello"),
			want: []string{
				`line 2: the item has no version; add version: "<version>" (or state: absent to remove the package)`,
				`line 2: the item has no artifact; add artifact: <sha256 of the package>, as shown by "outpost artifact push"`,
			},
		},
		{
			name: "bad state",
			src:  pkg("    state: removed"),
			want: []string{`line 6: state "removed" is not valid; use present or absent`},
		},
		{
			name: "state is a boolean",
			src:  pkg("    state: false"),
			want: []string{`line 6: state must be a string, not the boolean false; put it in quotes if you mean the text "false"`},
		},
		{
			name: "artifact never uploaded",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: "1"`, "", "", "    artifact: "+hashGone),
			want: []string{`line 7: artifact 3f2a00000000… was never uploaded; push it with "outpost artifact push"`},
		},
		{
			name: "artifact not a hash",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: "1"`, "    artifact: hello.tar.gz"),
			want: []string{`line 5: artifact "hello.tar.gz" is not a SHA-256; use the 64 lower-case hex digits shown by "outpost artifact push"`},
		},
		{
			name: "artifact in upper case",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: "1"`, "    artifact: "+strings.ToUpper(hashHello)),
			want: []string{`line 5: artifact "` + strings.ToUpper(hashHello) + `" is not a SHA-256; use the 64 lower-case hex digits shown by "outpost artifact push"`},
		},
		{
			name: "artifact one digit short",
			src:  lines("items:", "  - kind: package", "    name: hello", `    version: "1"`, "    artifact: sha256:"+hashHello[1:]),
			want: []string{`line 5: artifact "sha256:` + hashHello[1:] + `" is not a SHA-256; use the 64 lower-case hex digits shown by "outpost artifact push"`},
		},
		{
			name: "relative prefix",
			src:  pkg("    prefix: opt/hello"),
			want: []string{`line 6: prefix "opt/hello" is not an absolute path; write one such as /opt/hello`},
		},
		{
			name: "prefix with dot-dot",
			src:  pkg("    prefix: /opt/../etc"),
			want: []string{`line 6: prefix "/opt/../etc" has a .. element; write the directory it means`},
		},
		{
			name: "unclean prefix",
			src:  pkg("    prefix: /opt//hello/"),
			want: []string{`line 6: prefix "/opt//hello/" is not a clean path; write /opt/hello`},
		},
		{
			name: "root prefix",
			src:  pkg("    prefix: /"),
			want: []string{`line 6: prefix / would install over the whole file system; use a directory such as /opt/hello`},
		},
		{
			name: "prefix with backslash",
			src:  pkg(`    prefix: 'C:\Program Files'`),
			want: []string{`line 6: prefix "C:\\Program Files" is not an absolute path; write one such as /opt/hello`},
		},
		{
			name: "duplicate item",
			src: pkg(
				"  - kind: package",
				"    name: tools",
				"    state: absent",
				"  - kind: package",
				"    name: hello",
				"    state: absent",
			),
			want: []string{`line 9: duplicate item package/hello (first on line 2); each kind and name may appear once`},
		},
		{
			name: "item is a string",
			src:  lines("items:", "  - hello"),
			want: []string{`line 2: an item must be a mapping with kind, name and so on, not the text "hello"`},
		},
		{
			name: "items is a mapping",
			src:  lines("items:", "  hello: {}"),
			want: []string{`line 2: items must be a list of items, not a mapping`},
		},
		{
			name: "no items",
			src:  lines("{}"),
			want: []string{"line 1: the policy has no items list; write `items: []` for a policy that manages nothing"},
		},
		{
			name: "items without a value",
			src:  lines("items:"),
			want: []string{"line 1: items must be a list of items, not an empty value"},
		},
		{
			name: "top level is a list",
			src:  lines("- kind: package", "  name: hello"),
			want: []string{"line 1: the policy must be a mapping with a top-level items list, not a list"},
		},
		{
			name: "top level is a string",
			src:  lines("hello"),
			want: []string{`line 1: the policy must be a mapping with a top-level items list, not the text "hello"`},
		},
		{
			name: "empty input",
			src:  "",
			want: []string{"the policy is empty; write `items: []` for a policy that manages nothing"},
		},
		{
			name: "only a comment",
			src:  lines("# nothing yet"),
			want: []string{"the policy is empty; write `items: []` for a policy that manages nothing"},
		},
		{
			name: "two documents",
			src:  lines("items: []", "---", "items: []"),
			want: []string{"line 2: the policy has more than one YAML document; put every item in the items list of one document"},
		},
		{
			name: "bad indentation",
			src:  lines("items:", "  - kind: package", "    name: hello", "   version: 1"),
			want: []string{"line 2: the policy is not valid YAML: did not find expected '-' indicator in the list or mapping that starts on this line; check the indentation and brackets below it"},
		},
		{
			name: "unclosed bracket",
			src:  lines("items:", "  - kind: package", "    name: [a, b", "    version: 1"),
			want: []string{"line 3: the policy is not valid YAML: did not find expected ',' or ']' in the list or mapping that starts on this line; check the indentation and brackets below it"},
		},
		{
			name: "unclosed quote",
			src:  lines("items:", "  - kind: package", `    name: "hello`, "    version: 1"),
			want: []string{"line 3: the policy is not valid YAML: found unexpected end of stream"},
		},
		{
			name: "colon in a value",
			src:  lines("items:", "  - kind: package", "    name: a: b"),
			want: []string{"line 3: the policy is not valid YAML: mapping values are not allowed in this context"},
		},
		{
			name: "tab indentation",
			src:  lines("items:", "\t- kind: package"),
			want: []string{"line 2: the policy is not valid YAML: found character that cannot start any token"},
		},
		{
			name: "alias",
			src:  lines("items:", "  - kind: package", "    name: &n hello", "    state: absent", "  - kind: package", "    name: *n", "    state: absent"),
			want: []string{"line 6: YAML aliases (*n) are not supported in a policy; write the value out"},
		},
		{
			name: "merge key",
			src:  lines("items:", "  - &base", "    kind: package", "    state: absent", "    name: a", "  - <<: *base", "    name: b"),
			want: []string{
				"line 6: item has a key that is not a plain name; use one of kind, name, version, artifact, state, prefix, window, reboot",
				"line 6: the item has no kind; add kind: package",
			},
		},
		{
			name: "several problems, in line order",
			src: lines(
				"items:",
				"  - kind: package",
				"    name: hello",
				"    verison: 1",
				"  - kind: patch",
				"  - kind: package",
				"    name: b",
				"    state: gone",
			),
			want: []string{
				`line 2: the item has no version; add version: "<version>" (or state: absent to remove the package)`,
				`line 2: the item has no artifact; add artifact: <sha256 of the package>, as shown by "outpost artifact push"`,
				`line 4: unknown field "verison" in item (did you mean "version"?)`,
				`line 5: the item has no id; add id: <patch id from outpost patch list>`,
				`line 8: state "gone" is not valid; use present or absent`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := Compile([]byte(tt.src), newUploaded())
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Compile = %d items, %v; want an *Error", len(items), err)
			}
			var got []string
			for _, p := range perr.Problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if perr.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", perr.Error())
			}
			if items != nil {
				t.Errorf("got items with an error")
			}
		})
	}
}

func TestCompileColumns(t *testing.T) {
	src := lines("items:", "  - kind: package", "    name: hello", "    verison: 1")
	_, err := Compile([]byte(src), newUploaded())
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Compile: %v; want an *Error", err)
	}
	// Problem 0 is the missing version at the item, 2 the misspelt key.
	if got := perr.Problems[2]; got.Line != 4 || got.Column != 5 {
		t.Errorf("misspelt key at %d:%d, want 4:5", got.Line, got.Column)
	}
}

func TestCompileLimits(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		src := "items: []\n" + strings.Repeat("#", MaxSize)
		_, err := Compile([]byte(src), newUploaded())
		want := fmt.Sprintf("the policy is %d bytes, more than the limit of %d (1 MiB); remove items or split the office", len(src), MaxSize)
		if err == nil || err.Error() != want {
			t.Fatalf("Compile = %v, want %q", err, want)
		}
	})
	t.Run("items", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("items:\n")
		for i := range MaxItems + 1 {
			fmt.Fprintf(&b, "- {kind: package, name: p%d, state: absent}\n", i)
		}
		_, err := Compile([]byte(b.String()), newUploaded())
		want := fmt.Sprintf("line %d: the policy has %d items, more than the limit of %d; remove items or split the office", MaxItems+2, MaxItems+1, MaxItems)
		if err == nil || err.Error() != want {
			t.Fatalf("Compile = %v, want %q", err, want)
		}
	})
	t.Run("exactly the item limit", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("items:\n")
		for i := range MaxItems {
			fmt.Fprintf(&b, "- {kind: package, name: p%d, state: absent}\n", i)
		}
		items, err := Compile([]byte(b.String()), newUploaded())
		if err != nil || len(items) != MaxItems {
			t.Fatalf("Compile = %d items, %v; want %d items", len(items), err, MaxItems)
		}
	})
	t.Run("problems", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("items:\n")
		for range maxProblems + 7 {
			b.WriteString("- {kind: nope}\n")
		}
		_, err := Compile([]byte(b.String()), newUploaded())
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("Compile: %v; want an *Error", err)
		}
		if len(perr.Problems) != maxProblems || perr.Omitted != 7 {
			t.Fatalf("%d problems listed and %d omitted, want %d and 7", len(perr.Problems), perr.Omitted, maxProblems)
		}
		if !strings.HasSuffix(err.Error(), "\n(and 7 more problems)") {
			t.Errorf("Error() does not end with the omitted count: %q", err.Error()[len(err.Error())-60:])
		}
	})
}

func TestCompileLookupFails(t *testing.T) {
	lookup := newUploaded()
	lookup.err = errors.New("bolt: database not open")
	_, err := Compile([]byte(lines("items:", "  - kind: package", "    name: hello", `    version: "1"`, "    artifact: "+hashHello)), lookup)
	var perr *Error
	if errors.As(err, &perr) {
		t.Fatalf("a failing lookup is the coordinator's fault, not the admin's: got *Error %v", err)
	}
	if !errors.Is(err, lookup.err) {
		t.Fatalf("Compile = %v; want it to wrap the lookup's error", err)
	}
	if !strings.Contains(err.Error(), "look up artifact "+hashHello) {
		t.Errorf("error does not say what was being done: %v", err)
	}
}
