//go:build unix

package packages

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

func TestHooks(t *testing.T) {
	bin := exe("bin/tool", "#!/bin/sh\necho tool\n")
	t.Run("pre and post run in order with their environment", func(t *testing.T) {
		e := newEnv(t)
		resp := e.mustInstall("tool", "1.0",
			bin,
			exe(HookPreInstall, "#!/bin/sh\necho \"pre $OUTPOST_PACKAGE $OUTPOST_VERSION $(test -e \"$OUTPOST_PREFIX/bin/tool\" && echo present || echo absent)\" >> \"$OUTPOST_ROOT/hooks.log\"\n"),
			exe(HookPostInstall, "#!/bin/sh\necho \"post $OUTPOST_HOOK $(test -e \"$OUTPOST_PREFIX/bin/tool\" && echo present)\" >> hooks.log\n"),
		)
		if !resp.GetChanged() {
			t.Fatalf("install = %v", resp)
		}
		if got := e.read("hooks.log"); got != "pre tool 1.0 absent\npost post-install present\n" {
			t.Fatalf("hooks.log = %q", got)
		}
	})
	t.Run("failing pre-install leaves nothing installed", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.install("tool", "1.0", bin, exe(HookPreInstall, "#!/bin/sh\necho service still running >&2\nexit 3\n"))
		if err == nil || !strings.Contains(err.Error(), "pre-install hook of tool 1.0 failed (exit status 3): service still running; nothing was installed") {
			t.Fatalf("install = %v", err)
		}
		if e.exists("opt/tool/bin/tool") {
			t.Fatal("files written after a failed pre-install hook")
		}
		if st := e.scan(pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, nil)); st.GetCompliant() || st.GetInstalledVersion() != "" {
			t.Fatalf("scan = %v", st)
		}
	})
	t.Run("hung hook is killed at its time limit with what it started", func(t *testing.T) {
		e := newEnv(t, WithHookTimeout(500*time.Millisecond))
		start := time.Now()
		_, err := e.install("tool", "1.0", bin, exe(HookPreInstall, "#!/bin/sh\necho waiting\nsleep 60 &\nwait\n"))
		if err == nil || !strings.Contains(err.Error(), "pre-install hook of tool 1.0 timed out after 500ms and was killed: waiting") {
			t.Fatalf("install = %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("a hung hook held the install for %v", d)
		}
	})
	t.Run("failing post-install is retried until it succeeds", func(t *testing.T) {
		e := newEnv(t)
		// The hook fails until a flag file appears in the root.
		post := exe(HookPostInstall, "#!/bin/sh\ntest -e ready || { echo not ready; exit 1; }\n")
		p, art := e.artifact(targz(t, bin, post))
		item := pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, art)
		apply := func() (*proto.ApplyResponse, error) {
			return e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
		}
		if _, err := apply(); err == nil || !strings.Contains(err.Error(), "installed, but post-install hook of tool 1.0 failed (exit status 1): not ready") {
			t.Fatalf("first apply = %v", err)
		}
		if st := e.scan(item); st.GetCompliant() || !strings.Contains(st.GetMessage(), "post-install hook has not succeeded") {
			t.Fatalf("scan after failed post-install = %v", st)
		}
		if err := os.WriteFile(filepath.Join(e.root, "ready"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		resp, err := apply()
		if err != nil || !strings.Contains(resp.GetMessage(), "post-install hook succeeded on retry") {
			t.Fatalf("retry = %v, %v", resp, err)
		}
		if st := e.scan(item); !st.GetCompliant() {
			t.Fatalf("scan after retry = %v", st)
		}
	})
}

// TestDeb: a .deb is not applicable in any root but /, and in / goes
// through dpkg (a stand-in dpkg here: the test must not change the host).
func TestDeb(t *testing.T) {
	debItem := func(state wire.State) *wire.Item {
		it := pkgItem("hello", "2.0-1", "", state, &wire.Artifact{Sha256: strings.Repeat("ab", 32), Name: "hello_2.0-1_amd64.deb"})
		return it
	}
	t.Run("other root", func(t *testing.T) {
		e := newEnv(t)
		st := e.scan(debItem(wire.State_STATE_PRESENT))
		if st.GetApplicable() || !strings.Contains(st.GetMessage(), "not applicable: a .deb installs through dpkg onto the whole system, and this agent's root is") {
			t.Fatalf("scan = %v", st)
		}
		_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: debItem(wire.State_STATE_PRESENT), ArtifactPath: "/nonexistent.deb"})
		if err == nil || !strings.Contains(err.Error(), "not applicable") {
			t.Fatalf("apply = %v", err)
		}
	})
	t.Run("root / through dpkg", func(t *testing.T) {
		dir := t.TempDir()
		db := filepath.Join(dir, "installed")
		write := func(name, body string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// dpkg --field says every .deb holds hello 2.0-1; dpkg --install
		// FILE records 2.0-1 (only when told what to do with changed
		// conffiles: nobody answers its question); --remove forgets;
		// dpkg-query reads.
		write("dpkg", `for a; do file=$a; done
case " $* " in
*" --field "*) printf 'Package: hello\nVersion: 2.0-1\n';;
*" --install "*) case " $* " in *" --force-confdef --force-confold "*) ;; *) echo "dpkg: asks about conffiles" >&2; exit 2;; esac
	case "$file" in *bad*) echo "dpkg: error processing archive $file" >&2; exit 1;; esac; echo 2.0-1 > `+db+`;;
*" --remove "*) rm -f `+db+`;;
esac
`)
		write("dpkg-query", `test -e `+db+` || { echo "dpkg-query: no packages found matching $5" >&2; exit 1; }
printf 'installed %s' "$(cat `+db+`)"
`)
		m := New(logging.Discard(), WithDpkgDir(dir))
		ctx := context.Background()
		scan := func(it *wire.Item) *proto.ItemState {
			r, err := m.Scan(ctx, &proto.ScanRequest{Root: "/", Items: []*wire.Item{it}})
			if err != nil {
				t.Fatal(err)
			}
			return r.GetItems()[0]
		}
		if st := scan(debItem(wire.State_STATE_PRESENT)); !st.GetApplicable() || st.GetCompliant() || st.GetMessage() != "hello is not installed (dpkg)" {
			t.Fatalf("scan before = %v", st)
		}
		if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: "/", Item: debItem(wire.State_STATE_PRESENT), ArtifactPath: "/tmp/bad.deb"}); err == nil ||
			!strings.Contains(err.Error(), "dpkg --force-confdef --force-confold --install /tmp/bad.deb failed (exit status 1): dpkg: error processing archive /tmp/bad.deb") {
			t.Fatalf("bad deb = %v", err)
		}
		r, err := m.Apply(ctx, &proto.ApplyRequest{Root: "/", Item: debItem(wire.State_STATE_PRESENT), ArtifactPath: "/tmp/hello.deb"})
		if err != nil || r.GetMessage() != "installed hello 2.0-1 with dpkg" {
			t.Fatalf("install = %v, %v", r, err)
		}
		if st := scan(debItem(wire.State_STATE_PRESENT)); !st.GetCompliant() {
			t.Fatalf("scan after = %v", st)
		}
		r, err = m.Apply(ctx, &proto.ApplyRequest{Root: "/", Item: debItem(wire.State_STATE_ABSENT)})
		if err != nil || r.GetMessage() != "removed hello 2.0-1 with dpkg" {
			t.Fatalf("remove = %v, %v", r, err)
		}
	})
}

// A hook may print for its whole time limit; the plugin runs as root and
// quotes only the last maxHookOutput bytes, so it must hold no more. Here a
// failing pre-install hook prints 256 MiB.
func TestHookOutputTakesBoundedMemory(t *testing.T) {
	e := newEnv(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := e.install("noisy", "1.0", exe(HookPreInstall, "#!/bin/sh\nhead -c 268435456 /dev/zero\necho boom >&2\nexit 1\n"))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("install = %v; want the hook's failure quoting its last words", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("running one noisy hook allocated %d MiB in the plugin for its output; want it bounded (only %d bytes are ever quoted)", grew>>20, maxHookOutput)
	}
}

func TestTailBufferKeepsTheLastBytesWritten(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{name: "nothing", want: ""},
		{name: "short output, trimmed", writes: []string{" one", "\ntwo"}, want: "one\ntwo"},
		{name: "exactly the limit", writes: []string{"abcdefgh"}, want: "abcdefgh"},
		{name: "one long write", writes: []string{"0123456789abcdefgh"}, want: "…abcdefgh"},
		{name: "many small writes", writes: []string{"0123", "4567", "89ab", "cdef", "gh"}, want: "…abcdefgh"},
		{name: "a long write after a short one", writes: []string{"xy", "abcdefgh"}, want: "…abcdefgh"},
		{name: "a cut character is dropped", writes: []string{"0123456789é", "bcdefgh"}, want: "…bcdefgh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: 8}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				if len(b.buf) > 2*b.max {
					t.Fatalf("buffer holds %d bytes, want at most %d", len(b.buf), 2*b.max)
				}
			}
			if got := b.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("concurrent writers", func(t *testing.T) {
		b := &tailBuffer{max: 64}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 1000 {
					b.Write([]byte("0123456789\n"))
				}
			}()
		}
		wg.Wait()
		if got := b.String(); !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "0123456789") {
			t.Fatalf("String() = %q", got)
		}
	})
}
