// Package placement decides which office a computer belongs in: the office
// owning the most specific address range that the computer is in;
// otherwise its home office (where it enrolled or was moved to by hand),
// as a roaming member when that home office has ranges of its own that the
// computer is outside. The addresses a computer reports are claims, so an
// office other than its home takes it only on what the coordinator sees
// itself: the computer connecting from inside the office's ranges, or
// from one of the office's egress addresses (its NAT) while reporting an
// address inside them. Joining an office gives its gossip key, policy and
// content, which a claim alone must not. It also keeps offices' ranges
// from overlapping. It is pure: no store, no network.
package placement

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Office is what placement needs of an office.
type Office struct {
	Name    string
	Subnets []string
	// Egress are the addresses the office's computers reach the
	// coordinator from, as the coordinator sees them (its NAT's public
	// address): a computer seen there is taken at its reported address.
	Egress []string
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
		// Addresses are compared unmapped (Place): an IPv4-mapped range
		// is the IPv4 range it maps, or it would hold nothing.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
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

// Placement is where a computer belongs now.
type Placement struct {
	Office  string
	Roaming bool
	// Unconfirmed names an office that a reported address falls in but
	// that does not take the computer, because the coordinator does not
	// see it connect from inside that office's ranges or from one of its
	// egress addresses ("" when none).
	Unconfirmed string
}

// Place returns where a computer belongs: home is its home office, seen
// the address the coordinator sees it connect from, reported the
// addresses it says it has.
func Place(offices []Office, home, seen string, reported []string) Placement {
	best, bestBits, unconfirmed, unconfirmedBits := "", -1, "", -1
	var homeHasRanges bool
	// Sorted so that equal-length matches (only possible with bad data)
	// resolve the same way every time; a copy, so that the caller's
	// slice, which concurrent check-ins may share, is only read.
	offices = slices.Clone(offices)
	slices.SortFunc(offices, func(a, b Office) int { return strings.Compare(a.Name, b.Name) })
	seenAddr, seenErr := netip.ParseAddr(seen)
	seenAddr = seenAddr.Unmap()
	var claims []netip.Addr
	for _, s := range reported {
		if a, err := netip.ParseAddr(s); err == nil {
			claims = append(claims, a.Unmap())
		}
	}
	for _, o := range offices {
		ps, err := ParseSubnets(o.Subnets)
		if err != nil {
			continue
		}
		if o.Name == home && len(ps) > 0 {
			homeHasRanges = true
		}
		// Reported addresses count at home (the computer belongs there
		// anyway) and where the coordinator sees it at the office's
		// egress.
		trusted := o.Name == home
		if eg, err := ParseSubnets(o.Egress); err == nil && seenErr == nil {
			for _, p := range eg {
				trusted = trusted || p.Contains(seenAddr)
			}
		}
		for _, p := range ps {
			if seenErr == nil && p.Contains(seenAddr) && p.Bits() > bestBits {
				best, bestBits = o.Name, p.Bits()
			}
			for _, a := range claims {
				if !p.Contains(a) {
					continue
				}
				if trusted && p.Bits() > bestBits {
					best, bestBits = o.Name, p.Bits()
				}
				if !trusted && p.Bits() > unconfirmedBits {
					unconfirmed, unconfirmedBits = o.Name, p.Bits()
				}
			}
		}
	}
	if unconfirmed == best || unconfirmedBits <= bestBits {
		unconfirmed = ""
	}
	if best != "" {
		return Placement{Office: best, Unconfirmed: unconfirmed}
	}
	return Placement{Office: home, Roaming: homeHasRanges, Unconfirmed: unconfirmed}
}
