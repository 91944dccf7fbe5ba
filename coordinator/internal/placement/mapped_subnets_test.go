package placement

import "testing"

// A range written as IPv4-mapped IPv6 ("::ffff:10.1.0.0/112") is the
// IPv4 range it maps: computers in it are placed there, and it overlaps
// another office's IPv4 range that holds the same addresses.
func TestIPv4MappedSubnetsAreTheirIPv4Range(t *testing.T) {
	offices := []Office{{Name: "berlin", Subnets: []string{"::ffff:10.1.0.0/112"}}, {Name: "paris", Subnets: []string{"10.2.0.0/16"}}}
	if got := Place(offices, "paris", "10.1.2.3", nil); got.Office != "berlin" {
		t.Errorf("seen at 10.1.2.3, inside berlin's ::ffff:10.1.0.0/112: placed %+v", got)
	}
	ps, err := ParseSubnets([]string{"::ffff:10.2.3.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := Overlap(ps, "lyon", offices); got != "paris" {
		t.Errorf("::ffff:10.2.3.0/120 overlaps paris's 10.2.0.0/16, found %q", got)
	}
}
