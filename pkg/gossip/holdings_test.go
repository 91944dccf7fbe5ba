package gossip

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
)

func shaOf(i int) string {
	s := sha256.Sum256([]byte(fmt.Sprint(i)))
	return hex.EncodeToString(s[:])
}

func TestHoldingsNoFalseNegativesFewFalsePositives(t *testing.T) {
	var held []string
	for i := range 100 {
		held = append(held, shaOf(i))
	}
	h := NewHoldings(append(held, "not-a-sha"))
	for _, s := range held {
		if !h.Has(s) {
			t.Fatalf("held %s not found", s)
		}
	}
	fp := 0
	for i := 1000; i < 11000; i++ {
		if h.Has(shaOf(i)) {
			fp++
		}
	}
	if fp > 50 { // expected about 10 in 10000
		t.Errorf("%d false positives in 10000 at 100 held", fp)
	}
	if NewHoldings(nil).Has(held[0]) || h.Has("zz") || h.Has("") {
		t.Error("empty filter or malformed hash says held")
	}
	// With the role, the roll-up flag and a port it stays well inside the
	// 512-byte limit memberlist puts on metadata.
	b, _ := json.Marshal(Meta{Role: "agent", Rollup: true, ContentPort: 65535, Holdings: h})
	if len(b) > 450 {
		t.Errorf("meta of %d bytes", len(b))
	}
}

func TestParseMeta(t *testing.T) {
	good, _ := json.Marshal(Meta{Role: "agent", ContentPort: 7000, Holdings: NewHoldings([]string{shaOf(1)})})
	for _, tc := range []struct {
		name     string
		in       string
		err      bool
		role     string
		holdings bool
	}{
		{"good", string(good), false, "agent", true},
		{"old member", `{"r":"relay","v":2}`, false, "relay", false},
		{"empty", ``, false, "", false},
		{"garbage", `{"r":`, true, "", false},
		{"bad port", `{"r":"agent","p":70000}`, true, "", false},
		{"short filter keeps the member", `{"r":"agent","h":"AAAA"}`, true, "agent", false},
		{"long role", `{"r":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`, true, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMeta([]byte(tc.in))
			if (err != nil) != tc.err || m.Role != tc.role || (m.Holdings != nil) != tc.holdings {
				t.Fatalf("got %+v, %v", m, err)
			}
		})
	}
}

func FuzzParseMeta(f *testing.F) {
	good, _ := json.Marshal(Meta{Role: "agent", ContentPort: 7000, Holdings: NewHoldings([]string{shaOf(1)})})
	f.Add(good)
	f.Add([]byte(`{"r":"relay","v":2}`))
	f.Add([]byte(`{"h":null,"p":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if m.ContentPort < 0 || m.ContentPort > 65535 || (len(m.Holdings) != 0 && len(m.Holdings) != HoldingsBytes) {
			t.Fatalf("accepted %+v (err %v)", m, err)
		}
		m.Holdings.Has(shaOf(1)) // never panics
	})
}
