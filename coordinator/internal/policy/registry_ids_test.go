package policy

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// Two items that manage different settings have different ids, whatever
// characters their paths hold: an id stands for one setting in merges,
// conflicts and the agents' records.
func TestRegistryItemsOfDifferentSettingsHaveDifferentIDs(t *testing.T) {
	for _, tc := range []struct{ name, a, b string }{
		{"a section, and a file named like it",
			"    path: /etc/app.ini\n    format: ini\n    section: s\n    name: n\n    value: x\n",
			"    path: /etc/app.ini[s]\n    name: n\n    value: x\n"},
		{"a value, and a file named like it",
			"    path: /etc/app.conf\n    name: n\n    value: x\n",
			"    path: /etc/app.conf#n\n    action: delete_key\n"},
		{"a registry value, and a key named like it",
			"    path: HKLM\\SOFTWARE\\Vendor\n    name: n\n    value: x\n",
			"    path: HKLM\\SOFTWARE\\Vendor#n\n    action: delete_key\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := Compile([]byte("items:\n  - kind: registry\n"+tc.a+"  - kind: registry\n"+tc.b), newUploaded())
			if err != nil {
				t.Fatalf("two different settings refused: %v", err)
			}
			if items[0].GetId() == items[1].GetId() {
				t.Fatalf("both settings have the id %s", items[0].GetId())
			}
		})
	}
}

// Windows registry keys and value names are the same in any case, and a
// hive has two names: two items that write one value are duplicates in a
// policy, and a conflict (or one overriding the other) across policies.
func TestRegistryKeysAreOneWhateverTheirCase(t *testing.T) {
	one := "  - kind: registry\n    path: HKLM\\SOFTWARE\\Vendor\n    name: Level\n    type: dword\n    value: 1\n"
	other := "  - kind: registry\n    path: HKEY_LOCAL_MACHINE\\Software\\vendor\n    name: level\n    type: dword\n    value: 2\n"
	_, err := Compile([]byte("items:\n"+one+other), newUploaded())
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("two items for one registry value compiled: %v", err)
	}

	compile := func(src string) []*wire.Item {
		t.Helper()
		items, err := Compile([]byte("items:\n"+src), newUploaded())
		if err != nil {
			t.Fatal(err)
		}
		return items
	}
	a, b := compile(one), compile(other)
	m := Merge([]Source{{Policy: "office:berlin", Level: LevelOffice, Items: a}, {Policy: "kiosks", Level: LevelLabel, Items: b}})
	if len(m.Items) != 1 || m.Items[0] != b[0] {
		t.Errorf("the label policy does not override the office's value: %v", m.Items)
	}
	if o, ok := m.Origins[m.Items[0].GetId()]; !ok || o.Policy != "kiosks" || len(o.Overridden) != 1 {
		t.Errorf("origin %+v", o)
	}
	m = Merge([]Source{{Policy: "a", Level: LevelLabel, Items: a}, {Policy: "b", Level: LevelLabel, Items: b}})
	if len(m.Conflicts) != 1 || len(m.Items) != 1 {
		t.Errorf("two label policies setting one value differently: items %v, conflicts %+v", m.Items, m.Conflicts)
	}
}
