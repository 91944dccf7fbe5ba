package policy

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

func TestCompileNamed(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		targets  Targets
		priority int
		items    int
		problems []string // substrings, in order
	}{
		{
			name: "every kind of target",
			src: lines(
				"targets:",
				"  offices: [berlin]",
				"  agents: [ag-0011223344556677, pc-17, pc-17]",
				`  labels: [kiosk, "floor=3"]`,
				"priority: 10",
				"items:",
				"  - kind: package",
				"    name: hello",
				`    version: "1.0.0"`,
				"    artifact: "+hashHello,
			),
			targets:  Targets{Offices: []string{"berlin"}, Agents: []string{"ag-0011223344556677", "pc-17"}, Labels: []string{"kiosk", "floor=3"}},
			priority: 10,
			items:    1,
		},
		{
			name:    "labels only, default priority, no items",
			src:     lines("targets: {labels: [lab]}", "items: []"),
			targets: Targets{Labels: []string{"lab"}},
		},
		{
			name:     "no targets",
			src:      lines("items: []"),
			problems: []string{"the policy has no targets"},
		},
		{
			name:     "empty targets",
			src:      lines("targets: {offices: []}", "items: []"),
			problems: []string{"line 1: targets names no office, agent or label"},
		},
		{
			name: "bad entries, each with its line",
			src: lines(
				"targets:",
				"  offices: [Berlin]",
				"  agents: ['pc 17']",
				`  labels: ["=x", "k=v w", "k-"]`,
				"  groups: [a]",
				"priority: high",
				"items: []",
			),
			problems: []string{
				`line 2: office "Berlin" is not an office name`,
				`line 3: agent "pc 17" is neither`,
				`line 4: label "=x"`,
				`line 4: label "k=v w"`,
				`line 4: label "k-"`,
				`line 5: unknown field "groups" in targets`,
				"line 6: priority must be a whole number",
			},
		},
		{
			name:     "priority out of range",
			src:      lines("targets: {labels: [a]}", "priority: 5000", "items: []"),
			problems: []string{"line 2: priority must be a whole number from -1000 to 1000"},
		},
		{
			name:     "targets is not a mapping",
			src:      lines("targets: [berlin]", "items: []"),
			problems: []string{"line 1: targets must be a mapping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := CompileNamed([]byte(tt.src), newUploaded())
			if len(tt.problems) > 0 {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a policy error", err)
				}
				if len(pe.Problems) != len(tt.problems) {
					t.Fatalf("problems:\n%v\nwant %d: %q", pe, len(tt.problems), tt.problems)
				}
				for i, want := range tt.problems {
					if got := pe.Problems[i].String(); !strings.Contains(got, want) {
						t.Errorf("problem %d = %q, want it to contain %q", i, got, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(n.Targets, tt.targets) || n.Priority != tt.priority || len(n.Items) != tt.items {
				t.Errorf("got targets %+v priority %d items %d, want %+v %d %d", n.Targets, n.Priority, len(n.Items), tt.targets, tt.priority, tt.items)
			}
		})
	}
}

func TestCompileRefusesTargetsInAnOfficePolicy(t *testing.T) {
	_, err := Compile([]byte("targets: {labels: [a]}\nitems: []\n"), newUploaded())
	if err == nil || !strings.Contains(err.Error(), `unknown field "targets"`) {
		t.Fatalf("err = %v, want targets refused", err)
	}
}

func pkg(name, version string) *wire.Item {
	return &wire.Item{Id: "package/" + name, Kind: KindPackage, State: wire.State_STATE_PRESENT,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: name, Version: version}}}
}

func absent(name string) *wire.Item {
	return &wire.Item{Id: "package/" + name, Kind: KindPackage, State: wire.State_STATE_ABSENT,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: name}}}
}

func TestMerge(t *testing.T) {
	type want struct {
		items     []string          // "id=version" or "id=absent", in order
		origins   map[string]string // item id → policy
		conflicts []string          // "item: p1,p2 (level priority)"
	}
	tests := []struct {
		name    string
		sources []Source
		want    want
	}{
		{
			name:    "one office policy is itself",
			sources: []Source{{Policy: "office:berlin", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1"), pkg("tools", "2")}}},
			want:    want{items: []string{"package/hello=1", "package/tools=2"}, origins: map[string]string{"package/hello": "office:berlin", "package/tools": "office:berlin"}},
		},
		{
			name: "agent over label over office, whatever the priorities",
			sources: []Source{
				{Policy: "agent-pol", Level: LevelAgent, Priority: -5, Items: []*wire.Item{pkg("hello", "3")}},
				{Policy: "label-pol", Level: LevelLabel, Priority: 100, Items: []*wire.Item{pkg("hello", "2"), pkg("kiosk", "1")}},
				{Policy: "office:berlin", Level: LevelOffice, Priority: 1000, Items: []*wire.Item{pkg("hello", "1"), pkg("tools", "1")}},
			},
			want: want{
				items:   []string{"package/hello=3", "package/tools=1", "package/kiosk=1"},
				origins: map[string]string{"package/hello": "agent-pol", "package/tools": "office:berlin", "package/kiosk": "label-pol"},
			},
		},
		{
			name: "a higher priority wins within a level",
			sources: []Source{
				{Policy: "a", Level: LevelLabel, Priority: 1, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "b", Level: LevelLabel, Priority: 2, Items: []*wire.Item{pkg("hello", "2")}},
			},
			want: want{items: []string{"package/hello=2"}, origins: map[string]string{"package/hello": "b"}},
		},
		{
			name: "a higher level can remove what a lower one installs",
			sources: []Source{
				{Policy: "office:berlin", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "no-hello", Level: LevelAgent, Items: []*wire.Item{absent("hello")}},
			},
			want: want{items: []string{"package/hello=absent"}, origins: map[string]string{"package/hello": "no-hello"}},
		},
		{
			name: "the same item set the same way at one level is no conflict; the first name is its source",
			sources: []Source{
				{Policy: "zeta", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "alpha", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1")}},
			},
			want: want{items: []string{"package/hello=1"}, origins: map[string]string{"package/hello": "alpha"}},
		},
		{
			name: "the same item set differently at one level and priority is a conflict",
			sources: []Source{
				{Policy: "zeta", Level: LevelLabel, Priority: 3, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "alpha", Level: LevelLabel, Priority: 3, Items: []*wire.Item{pkg("hello", "2"), pkg("tools", "1")}},
			},
			want: want{
				items:     []string{"package/hello=2", "package/tools=1"},
				origins:   map[string]string{"package/hello": "alpha", "package/tools": "alpha"},
				conflicts: []string{"package/hello: alpha,zeta (label 3)"},
			},
		},
		{
			name: "a conflict below an overriding policy is still reported",
			sources: []Source{
				{Policy: "o1", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "o2", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "2")}},
				{Policy: "mine", Level: LevelAgent, Items: []*wire.Item{pkg("hello", "3")}},
			},
			want: want{
				items:     []string{"package/hello=3"},
				origins:   map[string]string{"package/hello": "mine"},
				conflicts: []string{"package/hello: o1,o2 (office 0)"},
			},
		},
		{
			name: "three at one level, two of them equal",
			sources: []Source{
				{Policy: "c", Level: LevelAgent, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "b", Level: LevelAgent, Items: []*wire.Item{pkg("hello", "1")}},
				{Policy: "a", Level: LevelAgent, Items: []*wire.Item{pkg("hello", "9")}},
			},
			want: want{
				items:     []string{"package/hello=9"},
				origins:   map[string]string{"package/hello": "a"},
				conflicts: []string{"package/hello: a,b,c (agent 0)"},
			},
		},
		{
			name: "no sources, no items",
			want: want{origins: map[string]string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Merge(tt.sources)
			var items []string
			for _, it := range m.Items {
				v := it.GetPackage().GetVersion()
				if it.GetState() == wire.State_STATE_ABSENT {
					v = "absent"
				}
				items = append(items, it.GetId()+"="+v)
			}
			origins := map[string]string{}
			for id, o := range m.Origins {
				origins[id] = o.Policy
			}
			var conflicts []string
			for _, c := range m.Conflicts {
				conflicts = append(conflicts, c.Item+": "+strings.Join(c.Policies, ",")+" ("+c.Level.String()+" "+strconv.Itoa(c.Priority)+")")
			}
			if !reflect.DeepEqual(items, tt.want.items) {
				t.Errorf("items = %q, want %q", items, tt.want.items)
			}
			if !reflect.DeepEqual(origins, tt.want.origins) {
				t.Errorf("origins = %v, want %v", origins, tt.want.origins)
			}
			if !reflect.DeepEqual(conflicts, tt.want.conflicts) {
				t.Errorf("conflicts = %q, want %q", conflicts, tt.want.conflicts)
			}
		})
	}
}

func TestMergeRecordsWhatWasOverridden(t *testing.T) {
	m := Merge([]Source{
		{Policy: "office:berlin", Level: LevelOffice, Items: []*wire.Item{pkg("hello", "1")}},
		{Policy: "kiosks", Level: LevelLabel, Items: []*wire.Item{pkg("hello", "2")}},
		{Policy: "pc-17", Level: LevelAgent, Items: []*wire.Item{pkg("hello", "3")}},
	})
	o := m.Origins["package/hello"]
	if o.Policy != "pc-17" || o.Level != LevelAgent || !reflect.DeepEqual(o.Overridden, []string{"office:berlin", "kiosks"}) {
		t.Fatalf("origin = %+v", o)
	}
}

// FuzzCompileNamed feeds CompileNamed arbitrary bytes, as PUT
// /v1/policies/{name} does. It must never panic, must compile or say why,
// and what it compiles must target something valid.
func FuzzCompileNamed(f *testing.F) {
	for _, s := range []string{
		"",
		"targets: {labels: [a]}\nitems: []\n",
		lines("targets:", "  offices: [berlin]", "  agents: [pc-1, ag-0011223344556677]", `  labels: [kiosk, "floor=3"]`, "priority: -7", "items:",
			"  - kind: package", "    name: hello", `    version: "1.0.0"`, "    artifact: "+hashHello),
		"targets: {offices: [], agents: [], labels: []}\nitems: []\n",
		"targets: &t {labels: [a]}\npriority: *t\nitems: []\n",
		"targets: {labels: [\"=\", \"a=b=c\", k-]}\npriority: 1e3\nitems: []\n",
		"priority: 99999999999999999999\ntargets: {agents: [\"\"]}\nitems: []\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		n, err := CompileNamed(src, newUploaded())
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || len(perr.Problems) == 0 {
				t.Fatalf("CompileNamed returned %T %v; only an *Error with problems is expected", err, err)
			}
			if n != nil {
				t.Fatalf("a policy and an error")
			}
			return
		}
		if len(n.Targets.Offices)+len(n.Targets.Agents)+len(n.Targets.Labels) == 0 {
			t.Fatalf("compiled a policy that targets nothing")
		}
		if n.Priority < -MaxPriority || n.Priority > MaxPriority {
			t.Fatalf("priority %d out of range", n.Priority)
		}
		for _, l := range n.Targets.Labels {
			if CheckLabel(l) != "" {
				t.Fatalf("compiled a bad label %q", l)
			}
		}
		for _, o := range n.Targets.Offices {
			if !officeNameRE.MatchString(o) {
				t.Fatalf("compiled a bad office %q", o)
			}
		}
	})
}
