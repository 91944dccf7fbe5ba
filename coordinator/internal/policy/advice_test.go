package policy

import (
	"strings"
	"testing"
)

// A settings file outside the registry plugin's default prefixes compiles,
// with advice that hosts refuse it unless configured for it; one inside,
// and a Windows registry key, get none.
func TestAdviceOnSettingsFilesOutsideTheDefaults(t *testing.T) {
	items, err := Compile([]byte(`items:
  - kind: registry
    path: /var/lib/app/app.conf
    name: mode
    value: kiosk
  - kind: registry
    path: /etc/app.conf
    name: mode
    value: kiosk
  - kind: registry
    path: HKLM\SOFTWARE\Vendor
    name: mode
    value: kiosk
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	advice := Advice(items)
	if len(advice) != 1 || !strings.Contains(advice[0], "item registry:/var/lib/app/app.conf#mode: /var/lib/app/app.conf is outside /etc/ and /opt/") ||
		!strings.Contains(advice[0], "OUTPOST_REGISTRY_ALLOW") {
		t.Fatalf("advice %q", advice)
	}
}
