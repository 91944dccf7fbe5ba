package packages

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestNamesAnArchiveExpandsToAreBounded: MaxEntries and MaxPathLen bound
// the entries and each name, but not the names together, and every name
// is held, several times over, in memory and in the manifest, which every
// later apply reads. A 3.3 MB artifact of 99,000 empty files under names
// of 4,000 bytes passed every limit and took the plugin (root, on every
// host of the office) to 3.1 GB of memory and 90 seconds, and left a
// manifest of 400 MB behind; a few files 2,000 folders deep did the same
// with the names of the folders they imply. The names an archive installs
// now count against MaxNameBytes, implied folders included.
func TestNamesAnArchiveExpandsToAreBounded(t *testing.T) {
	lim := DefaultLimits()
	long := strings.Repeat(strings.Repeat("b", 239)+"/", 16)
	deep := strings.Repeat("a/", 2000)
	for _, c := range []struct {
		name    string
		entries func() []ent
	}{
		{"long names", func() []ent {
			var entries []ent
			for i := range int(lim.MaxNameBytes/int64(len(long))) + 10 {
				entries = append(entries, file(fmt.Sprintf("%sf%05d", long, i), ""))
			}
			return entries
		}},
		{"deep folders", func() []ent {
			var entries []ent
			for i := range 40 {
				entries = append(entries, file(fmt.Sprintf("d%02d/%sf", i, deep), ""))
			}
			return entries
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			entries := c.entries()
			data := gzStored(rawTar(t, entries...)) // cheap to make; the limit is on what it expands to
			plan, err := ValidateArchive(bytes.NewReader(data), lim)
			if err == nil {
				var names int
				for _, e := range plan.Entries {
					names += len(e.Path)
				}
				t.Fatalf("a %d-byte archive whose names add up to %d MB was accepted; want it refused beyond %d MB", len(data), names>>20, lim.MaxNameBytes>>20)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("names of more than %d MiB", lim.MaxNameBytes>>20)) {
				t.Fatalf("error = %v; want it to name the limit", err)
			}
		})
	}
	// A large real package stays well inside: as many files as MaxEntries
	// allows, under names of 300 bytes.
	if n := int64(lim.MaxEntries) * 300; n > lim.MaxNameBytes {
		t.Fatalf("%d entries with names of 300 bytes (%d MiB) are refused by MaxNameBytes", lim.MaxEntries, n>>20)
	}
	var entries []ent
	for i := range 20_000 {
		entries = append(entries, file(fmt.Sprintf("lib/python3/site-packages/some-module/%s/f%06d.py", strings.Repeat("x", 240), i), ""))
	}
	if _, err := ValidateArchive(bytes.NewReader(gzStored(rawTar(t, entries...))), lim); err != nil {
		t.Fatalf("a package of 20,000 files with names of about 300 bytes: %v", err)
	}
}
