package version

import "testing"

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "2.0.0", -1}, {"1.10", "1.9", 1}, {"2.0.0", "2.0.0", 0}, {"2.0", "2.0.1", -1}, {"1.0-rc1", "1.0-rc2", -1},
		// A pre-release is older than its release: semver, Debian's "~",
		// and a pre-release word glued on (Python).
		{"2.0.0-rc1", "2.0.0", -1}, {"2.0.0~rc1", "2.0.0", -1}, {"1.4.2-beta", "1.4.2", -1}, {"2.0rc1", "2.0", -1},
		{"1.0-rc2", "1.0-rc10", -1}, {"1.0-alpha", "1.0-beta", -1}, {"1.0-rc1", "1.0", -1}, {"1.0~1", "1.0", -1},
		// Other extras are newer: a Debian revision, letters glued on
		// (OpenSSL), another number.
		{"1.2.3-1", "1.2.3", 1}, {"1.0.1a", "1.0.1", 1}, {"1.0.1b", "1.0.1a", 1}, {"2.0.0.1", "2.0.0", 1},
		// Digits are newer than letters in the same place; leading zeros
		// do not count.
		{"1.0.1", "1.0.rc1", 1}, {"1.007", "1.7", 0}, {"10", "1a", 1}, {"9", "1a", 1},
	}
	for _, tt := range tests {
		if got := Compare(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Compare(tt.b, tt.a); got != -tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

// The order holds from one comparison to the next, whatever the versions:
// a < b and b < c give a < c.
func FuzzCompareIsAnOrder(f *testing.F) {
	for _, s := range [][3]string{{"1.0", "1.0.1", "1.0.1a"}, {"2.0~rc1", "2.0-rc1", "2.0"}, {"9", "10", "1a"}, {"1.0rc1", "1.0.rc1", "1.0.1"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, bc, ac := Compare(a, b), Compare(b, c), Compare(a, c)
		if Compare(b, a) != -ab {
			t.Fatalf("%q vs %q: %d both ways", a, b, ab)
		}
		if ab <= 0 && bc <= 0 && ac > 0 || ab >= 0 && bc >= 0 && ac < 0 {
			t.Fatalf("%q %q %q: ab %d bc %d ac %d", a, b, c, ab, bc, ac)
		}
	})
}
