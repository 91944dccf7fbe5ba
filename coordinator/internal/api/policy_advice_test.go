package api

import (
	"fmt"
	"strings"
	"testing"
)

// An office's and a named policy's apply carry the advice on settings
// files hosts refuse by default; the policy is applied all the same.
func TestPolicyApplyAdvisesOnRefusedSettingsFiles(t *testing.T) {
	srv, _, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	item := "items:\n  - kind: registry\n    path: /var/lib/app.conf\n    name: mode\n    value: kiosk\n"
	for path, body := range map[string]string{"/v1/offices/berlin/policy": item, "/v1/policies/kiosks": "targets: {offices: [berlin]}\n" + item} {
		code, out := call(t, srv, "PUT", path, body, token)
		if code/100 != 2 || !strings.Contains(fmt.Sprint(out["warnings"]), "/var/lib/app.conf is outside /etc/ and /opt/") {
			t.Errorf("PUT %s: %d %v", path, code, out)
		}
	}
}
