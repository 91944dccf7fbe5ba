package policy

import (
	"errors"
	"strings"
	"testing"

	gproto "google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/wire"
)

// catalog adds a patch catalog to uploaded.
type catalog struct {
	*uploaded
	patches map[string]*wire.PatchSpec
	sha     map[string]string
}

func (c catalog) Patch(id string) (*wire.PatchSpec, string, bool, error) {
	p, ok := c.patches[id]
	return p, c.sha[id], ok, nil
}

func TestCompileRegistryAndPatch(t *testing.T) {
	src := lines(
		"items:",
		"  - kind: registry",
		"    path: /etc/sysctl.d/99-outpost.conf",
		"    name: vm.swappiness",
		"    type: dword",
		"    value: 10",
		"    window: 22:00-04:00",
		"    reboot: if-needed-inside-window",
		"  - kind: registry",
		"    path: /opt/app/app.ini",
		"    format: ini",
		"    section: net",
		"    name: dns",
		"    type: multi_string",
		"    values: [10.0.0.1, 10.0.0.2]",
		"  - kind: registry",
		`    path: HKLM\SOFTWARE\Vendor`,
		"    action: delete_key",
		"    state: absent",
		"  - kind: patch",
		"    id: OUT-2026-001",
	)
	cat := catalog{uploaded: newUploaded(),
		patches: map[string]*wire.PatchSpec{"OUT-2026-001": {Id: "OUT-2026-001", Package: "hello", FixedVersion: "2.0.0"}},
		sha:     map[string]string{"OUT-2026-001": hashHello}}
	items, err := Compile([]byte(src), cat)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	want := []*wire.Item{
		{Id: "registry:/etc/sysctl.d/99-outpost.conf#vm.swappiness", Kind: "registry", State: wire.State_STATE_PRESENT,
			Window: "22:00-04:00", Reboot: "if-needed-inside-window",
			Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/etc/sysctl.d/99-outpost.conf", Name: "vm.swappiness", Type: "dword",
				Data: []string{"10"}, Format: "keyvalue", Action: "set"}}},
		{Id: "registry:/opt/app/app.ini[net]#dns", Kind: "registry", State: wire.State_STATE_PRESENT,
			Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/opt/app/app.ini", Format: "ini", Section: "net", Name: "dns",
				Type: "multi_string", Data: []string{"10.0.0.1", "10.0.0.2"}, Action: "set"}}},
		{Id: `registry:HKLM\SOFTWARE\Vendor`, Kind: "registry", State: wire.State_STATE_ABSENT,
			Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: `HKLM\SOFTWARE\Vendor`, Type: "string", Action: "delete_key"}}},
		{Id: "patch/OUT-2026-001", Kind: "patch", State: wire.State_STATE_PRESENT,
			Artifact: &wire.Artifact{Sha256: hashHello, Size: 1234, Name: "hello-1.0.0.tar.gz"},
			Spec:     &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-2026-001", Package: "hello", FixedVersion: "2.0.0"}}},
	}
	if len(items) != len(want) {
		t.Fatalf("got %d items, want %d: %v", len(items), len(want), items)
	}
	for i := range want {
		if !gproto.Equal(items[i], want[i]) {
			t.Errorf("item %d:\n got %v\nwant %v", i, items[i], want[i])
		}
	}
}

func TestCompileRegistryProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"dot dot", lines("items:", "  - kind: registry", "    path: /etc/../root/x.conf", "    name: a", "    value: 1"),
			`line 3: path "/etc/../root/x.conf" has a .. element; the registry plugin refuses paths that climb`},
		{"relative", lines("items:", "  - kind: registry", "    path: etc/x.conf", "    name: a", "    value: 1"),
			`line 3: path "etc/x.conf" is neither an absolute settings-file path nor a registry key (HKLM\...)`},
		{"bad dword", lines("items:", "  - kind: registry", "    path: /etc/x.conf", "    name: a", "    type: dword", "    value: -1"),
			`line 6: value "-1" is not a dword (an unsigned 32-bit number)`},
		{"section without ini", lines("items:", "  - kind: registry", "    path: /etc/x.conf", "    section: s", "    name: a", "    value: 1"),
			`line 4: section is only for ini files; add format: ini or remove section`},
		{"value on delete", lines("items:", "  - kind: registry", "    path: /etc/x.conf", "    name: a", "    action: delete_value", "    value: 1"),
			`line 6: action delete_value takes no value; remove it`},
		{"bad window", lines("items:", "  - kind: registry", "    path: /etc/x.conf", "    name: a", "    value: 1", "    window: 22-4"),
			`line 6: window "22-4" is not HH:MM-HH:MM in 24-hour time; write for example 22:00-04:00`},
		{"bad reboot", lines("items:", "  - kind: registry", "    path: /etc/x.conf", "    name: a", "    value: 1", "    reboot: always"),
			`line 6: reboot "always" is not valid; the reboot policies are never, if-needed-inside-window, notify-only`},
		{"unknown patch", lines("items:", "  - kind: patch", "    id: NOPE-1"),
			`line 3: patch NOPE-1 is not in the catalog; import it with "outpost patch import FEED"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]byte(tt.src), catalog{uploaded: newUploaded()})
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Compile = %v; want *Error", err)
			}
			if got := pe.Error(); !strings.Contains(got, tt.want) {
				t.Fatalf("got\n%s\nwant it to contain\n%s", got, tt.want)
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	src := lines(
		"defaults:",
		"  window: 22:00-04:00",
		"  reboot: notify-only",
		"items:",
		"  - kind: registry",
		"    path: /etc/a.conf",
		"    name: a",
		"    value: 1",
		"  - kind: registry",
		"    path: /etc/b.conf",
		"    name: b",
		"    value: 2",
		"    window: 01:00-02:00",
	)
	items, err := Compile([]byte(src), newUploaded())
	if err != nil {
		t.Fatal(err)
	}
	if items[0].GetWindow() != "22:00-04:00" || items[0].GetReboot() != "notify-only" || items[1].GetWindow() != "01:00-02:00" || items[1].GetReboot() != "notify-only" {
		t.Fatalf("items = %v", items)
	}
	_, err = Compile([]byte(lines("defaults:", "  window: soon", "  colour: red", "items: []")), newUploaded())
	if err == nil || !strings.Contains(err.Error(), `line 2: window "soon" is not HH:MM-HH:MM`) || !strings.Contains(err.Error(), `line 3: unknown field "colour" in defaults`) {
		t.Fatalf("bad defaults: %v", err)
	}
}
