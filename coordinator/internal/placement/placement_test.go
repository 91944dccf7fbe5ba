package placement

import "testing"

func TestPlace(t *testing.T) {
	offices := []Office{
		{Name: "berlin", Subnets: []string{"10.1.0.0/16"}},
		{Name: "berlin-lab", Subnets: []string{"10.1.7.0/24"}},
		{Name: "paris", Subnets: []string{"10.2.0.0/16", "2001:db8:2::/48"}},
		{Name: "by-hand"},
	}
	tests := []struct {
		name, home string
		addrs      []string
		office     string
		roaming    bool
	}{
		{"in home range", "berlin", []string{"10.1.2.3"}, "berlin", false},
		{"most specific wins", "berlin", []string{"10.1.7.9"}, "berlin-lab", false},
		{"visiting another office", "berlin", []string{"127.0.0.1", "10.2.0.5"}, "paris", false},
		{"ipv6", "berlin", []string{"2001:db8:2::1"}, "paris", false},
		{"outside every range: roaming", "berlin", []string{"192.168.1.20"}, "berlin", true},
		{"home without ranges is never roaming", "by-hand", []string{"192.168.1.20"}, "by-hand", false},
		{"garbage addresses ignored", "berlin", []string{"not-an-ip", ""}, "berlin", true},
		{"ipv4-mapped", "berlin", []string{"::ffff:10.2.0.9"}, "paris", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, r := Place(offices, tc.home, tc.addrs)
			if o != tc.office || r != tc.roaming {
				t.Fatalf("Place = %s, roaming %v; want %s, %v", o, r, tc.office, tc.roaming)
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
			Place([]Office{{Name: "o", Subnets: []string{ps[0].String()}}}, "o", []string{s})
		}
	})
}
