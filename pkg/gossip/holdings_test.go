package gossip

import (
	"crypto/sha256"
	"encoding/hex"
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
}
