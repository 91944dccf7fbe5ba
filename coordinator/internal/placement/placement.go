// Package placement decides which office a computer belongs in: the office
// owning the most specific address range that one of its reported
// addresses falls in; otherwise its home office (where it enrolled or was
// moved to by hand), as a roaming member when that home office has ranges
// of its own that the computer is outside. It also keeps offices' ranges
// from overlapping. It is pure: no store, no network.
package placement

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Office is what placement needs of an office.
type Office struct {
	Name    string
	Subnets []string
}

// MaxSubnets bounds an office's ranges.
const MaxSubnets = 256

// ParseSubnets checks and normalises an office's ranges ("10.1.0.0/16",
// "2001:db8::/48"; a bare address is a /32 or /128).
func ParseSubnets(in []string) ([]netip.Prefix, error) {
	if len(in) > MaxSubnets {
		return nil, fmt.Errorf("%d subnets: at most %d per office", len(in), MaxSubnets)
	}
	var out []netip.Prefix
	for _, s := range in {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("subnet %q: want CIDR notation such as 10.1.0.0/16", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Overlap returns the first office among others whose ranges overlap
// subnets, with the two overlapping ranges, or "" when none does.
func Overlap(subnets []netip.Prefix, self string, others []Office) (office string, mine, theirs netip.Prefix) {
	for _, o := range others {
		if o.Name == self {
			continue
		}
		ps, err := ParseSubnets(o.Subnets)
		if err != nil {
			continue
		}
		for _, a := range subnets {
			for _, b := range ps {
				if a.Overlaps(b) {
					return o.Name, a, b
				}
			}
		}
	}
	return "", netip.Prefix{}, netip.Prefix{}
}

// Place returns the office a computer with addrs belongs in now, and
// whether it is roaming.
func Place(offices []Office, home string, addrs []string) (office string, roaming bool) {
	best, bestBits := "", -1
	var homeHasRanges bool
	// Sorted so that equal-length matches (only possible with bad data)
	// resolve the same way every time.
	sort.Slice(offices, func(i, j int) bool { return offices[i].Name < offices[j].Name })
	for _, o := range offices {
		ps, err := ParseSubnets(o.Subnets)
		if err != nil {
			continue
		}
		if o.Name == home && len(ps) > 0 {
			homeHasRanges = true
		}
		for _, s := range addrs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			a = a.Unmap()
			for _, p := range ps {
				if p.Contains(a) && p.Bits() > bestBits {
					best, bestBits = o.Name, p.Bits()
				}
			}
		}
	}
	if best != "" {
		return best, false
	}
	return home, homeHasRanges
}
