package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

func regItem(id string, state wire.State, r *wire.RegistrySpec) *wire.Item {
	return &wire.Item{Id: id, Kind: Kind, State: state, Spec: &wire.Item_Registry{Registry: r}}
}

func writeFile(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSettingsEdits(t *testing.T) {
	tests := []struct {
		name, format, in string
		edit             func(d *settingsDoc)
		want             string
	}{
		{"set existing keeps comments", FormatKeyValue, "# tuned\nvm.swappiness = 60\nnet.x=1\n",
			func(d *settingsDoc) { d.set("", "vm.swappiness", "10") }, "# tuned\nvm.swappiness = 10\nnet.x=1\n"},
		{"set new appends", FormatKeyValue, "a = 1\n", func(d *settingsDoc) { d.set("", "b", "2") }, "a = 1\nb = 2\n"},
		{"set collapses duplicates", FormatKeyValue, "a=1\nb=2\na=3\n", func(d *settingsDoc) { d.set("", "a", "9") }, "a = 9\nb=2\n"},
		{"set into empty file", FormatKeyValue, "", func(d *settingsDoc) { d.set("", "a", "1") }, "a = 1\n"},
		{"delete", FormatKeyValue, "a=1\nb=2\n", func(d *settingsDoc) { d.del("", "a") }, "b=2\n"},
		{"ini set in section", FormatINI, "[core]\nx = 1\n\n[net]\ny = 2\n",
			func(d *settingsDoc) { d.set("core", "z", "3") }, "[core]\nx = 1\nz = 3\n\n[net]\ny = 2\n"},
		{"ini new section", FormatINI, "[core]\nx = 1\n", func(d *settingsDoc) { d.set("net", "y", "2") }, "[core]\nx = 1\n\n[net]\ny = 2\n"},
		{"ini same key other section untouched", FormatINI, "[a]\nk=1\n[b]\nk=2\n", func(d *settingsDoc) { d.set("b", "k", "3") }, "[a]\nk=1\n[b]\nk = 3\n"},
		{"ini global key before headers", FormatINI, "top=1\n[a]\nk=1\n", func(d *settingsDoc) { d.set("", "g", "2") }, "top=1\ng = 2\n[a]\nk=1\n"},
		{"ini delete section", FormatINI, "[a]\nk=1\n[b]\nk=2\n", func(d *settingsDoc) { d.deleteSection("a") }, "[b]\nk=2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseSettings([]byte(tt.in), tt.format)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(d)
			if got := string(d.bytes()); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseSettingsRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"unclosed header": "[core\nx=1\n",
		"NUL":             "a=1\x00\n",
		"not UTF-8":       "a=\xff\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseSettings([]byte(in), FormatINI); err == nil {
				t.Fatal("parsed; want an error")
			}
		})
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add([]byte("a = 1\n# c\n[s]\nb=2\n"), true)
	f.Add([]byte("[x\n"), true)
	f.Add([]byte("-net.ipv4.ip_forward\nvm.swappiness=1"), false)
	f.Fuzz(func(t *testing.T, data []byte, ini bool) {
		format := FormatKeyValue
		if ini {
			format = FormatINI
		}
		d, err := parseSettings(data, format)
		if err != nil {
			return
		}
		d.set("s", "k", "v")
		out := d.bytes()
		d2, err := parseSettings(out, format)
		if err != nil {
			t.Fatalf("our own output does not parse: %v\n%q", err, out)
		}
		section := "s"
		if !ini {
			section = ""
		}
		if v, ok := d2.get(section, "k"); !ok || v != "v" {
			t.Fatalf("after set, get = %q, %v\n%q", v, ok, out)
		}
	})
}

func TestItemSpecRefuses(t *testing.T) {
	tests := map[string]*wire.RegistrySpec{
		"relative path":     {Path: "etc/x.conf", Name: "a", Data: []string{"1"}},
		"dot dot":           {Path: "/etc/../root/.ssh/config", Name: "a", Data: []string{"1"}},
		"dword not number":  {Path: "/etc/x.conf", Name: "a", Type: "dword", Data: []string{"ten"}},
		"dword overflow":    {Path: "/etc/x.conf", Name: "a", Type: "dword", Data: []string{"4294967296"}},
		"unknown type":      {Path: "/etc/x.conf", Name: "a", Type: "binary", Data: []string{"1"}},
		"name with =":       {Path: "/etc/x.conf", Name: "a=b", Data: []string{"1"}},
		"section in kv":     {Path: "/etc/x.conf", Section: "s", Name: "a", Data: []string{"1"}},
		"newline in value":  {Path: "/etc/x.conf", Name: "a", Data: []string{"1\nb=2"}},
		"delete_key + name": {Path: "/etc/x.conf", Name: "a", Action: ActionDeleteKey},
		"unknown action":    {Path: "/etc/x.conf", Name: "a", Action: "purge"},
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := itemSpec(regItem("registry/x", wire.State_STATE_PRESENT, r)); err == nil {
				t.Fatal("accepted; want an error")
			}
		})
	}
}

// TestLifecycle drives every action through set, drift, repair and
// removal in a temporary root, checking that removal restores the file.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		file     string
		before   string // "" means no file
		spec     *wire.RegistrySpec
		after    string
		tamper   string // a hand edit that is drift
		restored string
	}{
		{
			name: "set existing value", file: "etc/sysctl.d/99-outpost.conf",
			before: "# local\nvm.swappiness = 60\n",
			spec:   &wire.RegistrySpec{Path: "/etc/sysctl.d/99-outpost.conf", Name: "vm.swappiness", Type: "dword", Data: []string{"10"}},
			after:  "# local\nvm.swappiness = 10\n", tamper: "# local\nvm.swappiness = 99\n",
			restored: "# local\nvm.swappiness = 60\n",
		},
		{
			name: "set in a new file", file: "etc/sysctl.d/98-new.conf",
			spec:  &wire.RegistrySpec{Path: "/etc/sysctl.d/98-new.conf", Name: "net.ipv4.ip_forward", Type: "dword", Data: []string{"0x1"}},
			after: "net.ipv4.ip_forward = 1\n", tamper: "",
			restored: "<missing>",
		},
		{
			name: "multi_string in ini", file: "opt/app/app.ini",
			before: "[net]\nproxy = none\n",
			spec: &wire.RegistrySpec{Path: "/opt/app/app.ini", Format: "ini", Section: "net", Name: "dns", Type: "multi_string",
				Data: []string{"10.0.0.1", "10.0.0.2"}},
			after: "[net]\nproxy = none\ndns = 10.0.0.1,10.0.0.2\n", tamper: "[net]\nproxy = none\ndns = 8.8.8.8\n",
			restored: "[net]\nproxy = none\n",
		},
		{
			name: "delete a value", file: "opt/app/app.ini",
			before: "[core]\ntelemetry = on\nx = 1\n",
			spec:   &wire.RegistrySpec{Path: "/opt/app/app.ini", Format: "ini", Section: "core", Name: "telemetry", Action: ActionDeleteValue},
			after:  "[core]\nx = 1\n", tamper: "[core]\nx = 1\ntelemetry = on\n",
			restored: "[core]\nx = 1\ntelemetry = on\n",
		},
		{
			name: "delete an ini section", file: "opt/app/app.ini",
			before: "[core]\nx = 1\n[legacy]\nold = yes\n",
			spec:   &wire.RegistrySpec{Path: "/opt/app/app.ini", Format: "ini", Section: "legacy", Action: ActionDeleteKey},
			after:  "[core]\nx = 1\n", tamper: "[core]\nx = 1\n[legacy]\nnew = 1\n",
			restored: "[core]\nx = 1\n[legacy]\nold = yes\n",
		},
		{
			name: "delete a keyvalue file", file: "etc/sysctl.d/50-vendor.conf",
			before: "kernel.panic = 1\n",
			spec:   &wire.RegistrySpec{Path: "/etc/sysctl.d/50-vendor.conf", Action: ActionDeleteKey},
			after:  "<missing>", tamper: "kernel.panic = 2\n",
			restored: "kernel.panic = 1\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.before != "" {
				writeFile(t, root, tt.file, tt.before)
			}
			m := New(logging.Discard())
			item := regItem("registry/x", wire.State_STATE_PRESENT, tt.spec)
			scan := func(it *wire.Item) *proto.ItemState {
				t.Helper()
				r, err := m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{it}})
				if err != nil {
					t.Fatal(err)
				}
				return r.GetItems()[0]
			}
			apply := func(it *wire.Item) *proto.ApplyResponse {
				t.Helper()
				r, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: it})
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return r
			}
			if st := scan(item); st.GetCompliant() || !st.GetApplicable() {
				t.Fatalf("before apply: %v", st)
			}
			if r := apply(item); !r.GetChanged() {
				t.Fatalf("first apply changed nothing: %v", r)
			}
			if got := readFile(t, root, tt.file); got != tt.after {
				t.Fatalf("after apply:\n%q\nwant\n%q", got, tt.after)
			}
			if st := scan(item); !st.GetCompliant() {
				t.Fatalf("after apply not compliant: %v", st)
			}
			if r := apply(item); r.GetChanged() {
				t.Fatalf("second apply changed something: %v", r)
			}
			// Drift: a hand edit.
			if tt.tamper == "" {
				os.Remove(filepath.Join(root, tt.file))
			} else {
				writeFile(t, root, tt.file, tt.tamper)
			}
			if st := scan(item); st.GetCompliant() {
				t.Fatalf("drift not seen: %v", st)
			}
			if r := apply(item); !r.GetChanged() {
				t.Fatalf("repair changed nothing: %v", r)
			}
			if st := scan(item); !st.GetCompliant() {
				t.Fatalf("after repair not compliant: %v", st)
			}
			// Removal restores the original from before the first apply.
			absent := regItem("registry/x", wire.State_STATE_ABSENT, tt.spec)
			if st := scan(absent); st.GetCompliant() {
				t.Fatalf("absent compliant before restoring: %v", st)
			}
			if r := apply(absent); !r.GetChanged() {
				t.Fatalf("removal changed nothing: %v", r)
			}
			if got := readFile(t, root, tt.file); got != tt.restored {
				t.Fatalf("after removal:\n%q\nwant\n%q", got, tt.restored)
			}
			if st := scan(absent); !st.GetCompliant() {
				t.Fatalf("absent not compliant after removal: %v", st)
			}
		})
	}
}

// TestConfinement: paths the policy may not touch are refused with a
// clear error and nothing is written.
func TestConfinement(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	outside := t.TempDir()
	writeFile(t, outside, "secret.conf", "a = 1\n")
	writeFile(t, root, "usr/bin/tool.conf", "a = 1\n")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etc", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "usr", "bin"), filepath.Join(root, "etc", "tobin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop2", filepath.Join(root, "etc", "loop1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop1", filepath.Join(root, "etc", "loop2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/missing/dir", filepath.Join(root, "etc", "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../x", filepath.Join(root, "etc", "up")); err != nil {
		t.Fatal(err)
	}
	m := New(logging.Discard(), WithAllow([]string{"/etc/", "/opt/"}))
	tests := []struct{ name, path, want string }{
		{"outside allow-list", "/usr/bin/tool.conf", "must be under /etc/, /opt/"},
		{"dot dot", "/etc/../usr/bin/tool.conf", ".. element"},
		{"symlink out of root", "/etc/escape/secret.conf", "out of the root"},
		{"symlink out of allow-list", "/etc/tobin/tool.conf", "not under /etc/, /opt/"},
		{"symlink loop", "/etc/loop1", "more than 40 symlinks"},
		{"dangling symlink", "/etc/dangling/x.conf", "does not resolve"},
		{"symlink above the root", "/etc/up/x.conf", "above the root"},
		{"own state", "/var/lib/outpost/registry/x.json", "must be under"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			item := regItem("registry/bad", wire.State_STATE_PRESENT, &wire.RegistrySpec{Path: tt.path, Name: "a", Data: []string{"2"}})
			_, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v; want an error with %q", err, tt.want)
			}
			st, err := m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
			if err != nil || st.GetItems()[0].GetCompliant() {
				t.Fatalf("Scan = %v, %v; want not compliant", st, err)
			}
		})
	}
	if got := readFile(t, outside, "secret.conf"); got != "a = 1\n" {
		t.Fatalf("file outside the root changed: %q", got)
	}
	if got := readFile(t, root, "usr/bin/tool.conf"); got != "a = 1\n" {
		t.Fatalf("file outside the allow-list changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused item left a journal: %v", err)
	}
}

// TestRegistryKeyNotApplicable: a Windows key on another OS is reported
// not applicable rather than failed.
func TestRegistryKeyNotApplicable(t *testing.T) {
	if registrySupported {
		t.Skip("this host has a registry")
	}
	m := New(logging.Discard())
	item := regItem("registry/w", wire.State_STATE_PRESENT, &wire.RegistrySpec{Path: `HKLM\SOFTWARE\Outpost`, Name: "Level", Type: "dword", Data: []string{"1"}})
	r, err := m.Scan(context.Background(), &proto.ScanRequest{Root: t.TempDir(), Items: []*wire.Item{item}})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.GetItems()[0]; st.GetApplicable() || !strings.Contains(st.GetMessage(), "only on Windows") {
		t.Fatalf("scan = %v; want not applicable", st)
	}
}

// TestTargetChange: when an item is changed to touch another value, the
// first one's original is put back.
func TestTargetChange(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	writeFile(t, root, "etc/app.conf", "a = 1\nb = 2\n")
	m := New(logging.Discard())
	for _, name := range []string{"a", "b"} {
		item := regItem("registry/app", wire.State_STATE_PRESENT, &wire.RegistrySpec{Path: "/etc/app.conf", Name: name, Data: []string{"9"}})
		if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, root, "etc/app.conf"); got != "a = 1\nb = 9\n" {
		t.Fatalf("got %q; want a restored and b set", got)
	}
}
