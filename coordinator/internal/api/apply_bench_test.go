package api

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkApplyAtScale applies policies with 20 offices of 100 enrolled
// agents each in the store, as the fleet-scale benchmark (e2e) has them:
// an office's own policy, and a named policy that targets every office
// (one change, twenty offices published).
func BenchmarkApplyAtScale(b *testing.B) {
	srv, st, _ := newAPI(b)
	var offices []string
	for o := range 20 {
		office := fmt.Sprintf("office-%02d", o)
		offices = append(offices, office)
		if code, out := call(b, srv, "POST", "/v1/offices", `{"name":"`+office+`"}`, token); code != 201 {
			b.Fatalf("office: %d %v", code, out)
		}
		for i := range 100 {
			enrolAgent(b, st, office, fmt.Sprintf("a-%02d-%03d", o, i), fmt.Sprintf("host-%02d-%03d", o, i))
		}
	}
	item := "items:\n  - kind: registry\n    path: /etc/app.conf\n    name: %s\n    value: \"%d\"\n"
	b.Run("office", func(b *testing.B) {
		for i := range b.N {
			body := fmt.Sprintf(item, "office", i)
			if code, out := call(b, srv, "PUT", "/v1/offices/"+offices[i%20]+"/policy?force=true", body, token); code != 200 {
				b.Fatalf("apply: %d %v", code, out)
			}
		}
	})
	b.Run("named-all-offices", func(b *testing.B) {
		for i := range b.N {
			body := fmt.Sprintf("targets:\n  offices: [%s]\n"+item, strings.Join(offices, ", "), "fleet", i)
			code, out := call(b, srv, "PUT", "/v1/policies/fleet?force=true", body, token)
			if code != 200 && code != 201 {
				b.Fatalf("apply: %d %v", code, out)
			}
			if pub, _ := out["published"].(map[string]any); len(pub) != 20 {
				b.Fatalf("published %v, want 20 offices", out["published"])
			}
		}
	})
}
