package placement

import "testing"

func TestPlace(t *testing.T) {
	offices := []Office{
		{Name: "berlin", Subnets: []string{"10.1.0.0/16"}, Egress: []string{"203.0.113.1"}},
		{Name: "berlin-lab", Subnets: []string{"10.1.7.0/24"}},
		{Name: "paris", Subnets: []string{"10.2.0.0/16", "2001:db8:2::/48"}, Egress: []string{"198.51.100.0/29", "2001:db8:ff::/64"}},
		{Name: "lyon", Subnets: []string{"10.3.0.0/16"}}, // no egress: flat network only
		{Name: "by-hand"},
	}
	const internet = "192.0.2.77" // a café, a home
	tests := []struct {
		name, home, seen string
		reported         []string
		want             Placement
	}{
		{"seen inside its home range", "berlin", "10.1.2.3", nil, Placement{Office: "berlin"}},
		{"home range reported from behind any NAT", "berlin", internet, []string{"10.1.2.3"}, Placement{Office: "berlin"}},
		{"most specific wins", "berlin", "10.1.7.9", []string{"10.1.7.9"}, Placement{Office: "berlin-lab"}},
		{"visiting, seen at the office's egress", "berlin", "198.51.100.3", []string{"127.0.0.1", "10.2.0.5"}, Placement{Office: "paris"}},
		{"visiting, seen inside the office's range", "berlin", "10.3.4.5", nil, Placement{Office: "lyon"}},
		{"a claim alone takes no other office", "berlin", internet, []string{"10.2.0.5"},
			Placement{Office: "berlin", Roaming: true, Unconfirmed: "paris"}},
		{"a claim from another office's egress takes no third office", "berlin", "198.51.100.3", []string{"10.3.0.5"},
			Placement{Office: "berlin", Roaming: true, Unconfirmed: "lyon"}},
		{"a claim beside a confirmed home is named", "berlin", internet, []string{"10.1.7.9"},
			Placement{Office: "berlin", Unconfirmed: "berlin-lab"}},
		{"ipv6 egress", "berlin", "2001:db8:ff::9", []string{"2001:db8:2::1"}, Placement{Office: "paris"}},
		{"outside every range: roaming", "berlin", internet, []string{"192.168.1.20"}, Placement{Office: "berlin", Roaming: true}},
		{"home without ranges is never roaming", "by-hand", internet, []string{"192.168.1.20"}, Placement{Office: "by-hand"}},
		{"garbage addresses ignored", "berlin", "not-an-ip", []string{"not-an-ip", ""}, Placement{Office: "berlin", Roaming: true}},
		{"ipv4-mapped", "berlin", "::ffff:198.51.100.1", []string{"::ffff:10.2.0.9"}, Placement{Office: "paris"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Place(offices, tc.home, tc.seen, tc.reported); got != tc.want {
				t.Fatalf("Place = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOverlapAndParse(t *testing.T) {
	others := []Office{{Name: "berlin", Subnets: []string{"10.1.0.0/16"}}, {Name: "paris", Subnets: []string{"10.2.0.0/16"}}}
	for _, tc := range []struct {
		in   []string
		self string
		want string
	}{
		{[]string{"10.1.5.0/24"}, "lab", "berlin"},
		{[]string{"10.0.0.0/8"}, "hq", "berlin"},
		{[]string{"10.3.0.0/16"}, "rome", ""},
		{[]string{"10.1.0.0/16"}, "berlin", ""}, // itself
		{[]string{"10.2.0.1"}, "x", "paris"},
	} {
		ps, err := ParseSubnets(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := Overlap(ps, tc.self, others); got != tc.want {
			t.Errorf("Overlap(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"10.1.0.0/33", "berlin", "10.1.0.0/16/2", ""} {
		if _, err := ParseSubnets([]string{bad}); err == nil {
			t.Errorf("ParseSubnets(%q) accepted", bad)
		}
	}
}

func FuzzParseSubnets(f *testing.F) {
	f.Add("10.1.0.0/16")
	f.Add("::1")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseSubnets([]string{s})
		if err == nil {
			Place([]Office{{Name: "o", Subnets: []string{ps[0].String()}, Egress: []string{ps[0].String()}}, {Name: "p", Subnets: []string{"10.0.0.0/8"}}}, "p", s, []string{s})
		}
	})
}
