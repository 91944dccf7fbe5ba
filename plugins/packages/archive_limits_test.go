package packages

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestValidatingLongSymlinkTargetsTakesLinearWork: following a symlink's
// target must cost in proportion to its length. A target of 2,000 elements
// once cost a few megabytes of copying (the path so far joined again at
// every element), so that a 60 KB artifact of 2,000 such links kept the
// plugin busy for half a minute, and one of 100,000 for most of an hour.
func TestValidatingLongSymlinkTargetsTakesLinearWork(t *testing.T) {
	target := strings.TrimSuffix(strings.Repeat("a/", 2040), "/")
	var entries []ent
	for i := range 200 {
		entries = append(entries, symlink(fmt.Sprintf("l%04d", i), target))
	}
	// Through a deep chain of directories the archive names, too.
	entries = append(entries, file(target+"x", "x"))
	for i := range 200 {
		entries = append(entries, symlink(fmt.Sprintf("d%04d", i), target))
	}
	data := targz(t, entries...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := ValidateArchive(bytes.NewReader(data), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// The tar itself is about 4 MB; reading it costs a few times that.
	if got := (after.TotalAlloc - before.TotalAlloc) >> 20; got > 64 {
		t.Fatalf("validating a %d-byte archive of 400 symlinks allocated %d MB; want it linear in the archive's size", len(data), got)
	}
}

// TestDpkgOutputTakesBoundedMemory: what dpkg prints includes what the
// maintainer scripts of the .deb print, for up to dpkgTimeout. Only the
// last maxHookOutput bytes are ever quoted, so the plugin, running as
// root, must hold no more, as it does for a package's own hooks. Here a
// failing dpkg prints 256 MiB.
func TestDpkgOutputTakesBoundedMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("dpkg", "case \" $* \" in *\" --field \"*) printf 'Package: hello\\nVersion: 2.0-1\\n'; exit 0;; esac\n"+
		"head -c 268435456 /dev/zero | tr '\\0' x\necho\necho 'dpkg: postinst failed' >&2\nexit 1\n")
	write("dpkg-query", "exit 1\n")
	m := New(logging.Discard(), WithDpkgDir(dir))
	item := pkgItem("hello", "2.0-1", "", wire.State_STATE_PRESENT, &wire.Artifact{Sha256: strings.Repeat("ab", 32), Name: "hello_2.0-1_amd64.deb"})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := m.Apply(context.Background(), &proto.ApplyRequest{Root: "/", Item: item, ArtifactPath: "/tmp/hello.deb"})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "dpkg: postinst failed") {
		t.Fatalf("install = %v; want dpkg's failure quoting its last words", err)
	}
	if len(err.Error()) > 2*maxHookOutput {
		t.Errorf("the error quotes %d bytes of dpkg's output; want at most about %d", len(err.Error()), maxHookOutput)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("one noisy dpkg run allocated %d MiB in the plugin for its output; want it bounded (only %d bytes are ever quoted)", grew>>20, maxHookOutput)
	}
}

// TestDirectoriesAnArchiveImpliesCountAsEntries: MaxEntries bounds what an
// archive installs, directories included. A file at a path 2,000
// directories deep implies 2,000 directories, none of them listed: 60
// such files made a 10 KB archive that passed the limit of 100,000 entries
// and created 120,000 directories (and 100,000 such files, 200 million,
// more than the plugin's memory or the disk's inodes hold).
func TestDirectoriesAnArchiveImpliesCountAsEntries(t *testing.T) {
	deep := strings.Repeat("a/", 2000)
	var entries []ent
	for i := range 60 {
		entries = append(entries, file(fmt.Sprintf("d%02d/%sf", i, deep), "x"))
	}
	data := targz(t, entries...)
	lim := DefaultLimits()
	lim.MaxNameBytes = 1 << 40 // what their names add up to is another limit
	plan, err := ValidateArchive(bytes.NewReader(data), lim)
	if err == nil {
		t.Fatalf("a %d-byte archive of %d files was accepted with %d entries; want it refused for more than %d", len(data), len(entries), len(plan.Entries), lim.MaxEntries)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("more than %d entries", lim.MaxEntries)) {
		t.Fatalf("error = %v; want it to name the limit of entries", err)
	}
}

// TestValidatingManyDeepPathsTakesLinearWork: checking the directories
// above each entry must not climb again through those already checked.
// Each of 10,000 files 2,000 directories deep, in a 240 KB archive, once
// had its 2,000 ancestors looked up by their whole paths: 100 seconds of
// work, and 100,000 such files most of an hour, at every apply. Timed
// against an archive of as many names as long but 17 directories deep.
func TestValidatingManyDeepPathsTakesLinearWork(t *testing.T) {
	timed := func(dirs string) time.Duration {
		var entries []ent
		for i := range 1000 {
			entries = append(entries, file(fmt.Sprintf("%sf%04d", dirs, i), ""))
		}
		data := targz(t, entries...)
		start := time.Now()
		if _, err := ValidateArchive(bytes.NewReader(data), DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	shallow := timed(strings.Repeat(strings.Repeat("b", 239)+"/", 17))
	deep := timed(strings.Repeat("a/", 2040))
	if deep > 10*shallow+time.Second/2 {
		t.Fatalf("validating 1,000 files 2,040 directories deep took %s, 1,000 as long 17 deep %s; want work linear in the archive's size",
			deep.Round(time.Millisecond), shallow.Round(time.Millisecond))
	}
}
