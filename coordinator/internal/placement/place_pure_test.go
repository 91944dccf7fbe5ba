package placement

import (
	"slices"
	"sync"
	"testing"
)

// Place is documented as pure, but it sorted the caller's slice of offices
// in place: a caller that keeps one list of offices for every check-in
// (the cache a busy coordinator wants) had it reordered under its feet,
// and two check-ins placed at once wrote the same slice concurrently — a
// data race. It leaves the slice as it was given.
func TestPlaceLeavesTheCallersOfficesAlone(t *testing.T) {
	offices := []Office{
		{Name: "paris", Subnets: []string{"10.2.0.0/16"}},
		{Name: "lyon", Subnets: []string{"10.3.0.0/16"}},
		{Name: "berlin", Subnets: []string{"10.1.0.0/16"}},
	}
	names := func() []string {
		var out []string
		for _, o := range offices {
			out = append(out, o.Name)
		}
		return out
	}
	before := names()
	var wg sync.WaitGroup
	for _, seen := range []string{"10.1.2.3", "10.2.2.3", "10.3.2.3", "192.0.2.1"} {
		wg.Go(func() { Place(offices, "berlin", seen, []string{seen}) })
	}
	wg.Wait()
	if got := Place(offices, "berlin", "10.2.0.9", nil); got.Office != "paris" {
		t.Fatalf("placed %+v, want paris", got)
	}
	if after := names(); !slices.Equal(after, before) {
		t.Fatalf("Place reordered the caller's offices: %v, was %v", after, before)
	}
}
