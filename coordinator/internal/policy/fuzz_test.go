package policy

import (
	"errors"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// FuzzCompile feeds Compile arbitrary bytes, as the admin API does with a
// request body. It must never panic, and must either compile or say why.
func FuzzCompile(f *testing.F) {
	seeds := []string{
		"",
		"items: []\n",
		lines("items:", "  - kind: package", "    name: hello", `    version: "1.0.0"`, "    artifact: "+hashHello),
		lines("items:", "  - kind: package", "    name: old", "    state: absent", "    prefix: /opt/old"),
		lines("items:", "  - kind: patch", "  - kind: registry", "  - {kind: package, name: a, state: absent}", "  - {kind: package, name: a, state: absent}"),
		lines("items:", "  - &a {kind: package}", "  - *a", "  - <<: *a"),
		lines("items: []", "---", "items: []"),
		lines("items:", "  - kind: package", "    verison: 1", "    artifact: sha256:"+hashGone),
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		"items: !!binary aGVsbG8=\n",
		"? [a]\n: b\n",
		"items:\n\t- x\n",
		lines("items:", "  - kind: registry", "    path: /etc/sysctl.d/99-x.conf", "    name: vm.swappiness", "    type: dword", "    value: 0x10", "    window: 22:00-04:00"),
		lines("items:", "  - kind: registry", "    path: /opt/a.ini", "    format: ini", "    section: s", "    name: k", "    type: multi_string", "    values: [a, b]"),
		lines("items:", "  - kind: registry", `    path: HKLM\SOFTWARE\X`, "    action: delete_key", "    reboot: notify-only"),
		lines("items:", "  - kind: patch", "    id: OUT-1", "    state: absent"),
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		items, err := Compile(src, newUploaded())
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Compile returned %T %v; only *Error is expected with a working lookup", err, err)
			}
			if len(perr.Problems) == 0 || perr.Error() == "" {
				t.Fatalf("an *Error without problems")
			}
			if items != nil {
				t.Fatalf("items and an error")
			}
			return
		}
		for _, it := range items {
			if it.GetId() == "" {
				t.Fatalf("compiled an item without id: %v", it)
			}
			if it.GetWindow() != "" && CheckWindow(it.GetWindow()) != "" {
				t.Fatalf("compiled an invalid window: %v", it)
			}
			switch it.GetKind() {
			case KindPackage:
				if it.GetPackage().GetName() == "" {
					t.Fatalf("compiled a package without name: %v", it)
				}
				if it.GetState() == wire.State_STATE_PRESENT && (it.GetArtifact().GetSha256() == "" || it.GetPackage().GetVersion() == "") {
					t.Fatalf("compiled a present package without artifact or version: %v", it)
				}
			case KindRegistry:
				r := it.GetRegistry()
				if r.GetPath() == "" || hasDotDot(r.GetPath()) || (r.GetAction() != "delete_key" && r.GetName() == "") {
					t.Fatalf("compiled a registry item without a safe path or a name: %v", it)
				}
				if r.GetAction() == "set" && it.GetState() == wire.State_STATE_PRESENT && len(r.GetData()) == 0 {
					t.Fatalf("compiled a set without a value: %v", it)
				}
			default:
				t.Fatalf("compiled kind %q without a catalog", it.GetKind())
			}
		}
	})
}
