//go:build unix

package packages

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestPostInstallHookReplacedInItsFolderIsNotRun: the post-install hook
// ran, as root, as whatever file was at its installed path when it
// started. Where that folder may be written by others (a package folder
// the archive makes 0777, or a prefix a service account owns), any local
// user could put a script of their own there between the install and
// the run, or before a retry, and have root run it. The hook's content is
// now checked against the manifest as it is copied to a private file, and
// that copy is what runs (with $0 still the installed path); a hook that
// is not the package's is not run, the package is reported drifted, and
// the next apply repairs it and runs the real one.
func TestPostInstallHookReplacedInItsFolderIsNotRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	const nobody = 65534
	for _, c := range []struct {
		name    string
		outpost ent    // the archive's .outpost folder
		owned   bool   // whether the prefix is the user's
		move    string // what the user does, as a shell command, in the prefix
	}{
		{name: "folder the archive makes writable by all", outpost: ent{name: ".outpost/", typ: '5', mode: 0o777},
			move: `printf '#!/bin/sh\necho planted >> "$OUTPOST_ROOT/ran"\n' > .outpost/mine && mv -f .outpost/mine .outpost/post-install`},
		{name: "prefix a service account owns", outpost: dir(".outpost/"), owned: true,
			move: `mv .outpost .theirs && mkdir .outpost && printf '#!/bin/sh\necho planted >> "$OUTPOST_ROOT/ran"\n' > .outpost/post-install`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			// The user must reach the root, as on a real system.
			for d := e.root; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
				must(t, os.Chmod(d, 0o755))
			}
			prefix := filepath.Join(e.root, "opt", "tool")
			if c.owned {
				must(t, os.MkdirAll(prefix, 0o755))
				must(t, os.Chown(prefix, nobody, nobody))
			}
			genuine := "#!/bin/sh\necho \"genuine $0\" >> \"$OUTPOST_ROOT/ran\"\n"
			p, art := e.artifact(targz(t, exe("bin/tool", "#!/bin/sh\n"), c.outpost, exe(HookPostInstall, genuine)))
			item := pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, art)
			// The user's move, once the files are in place.
			e.m.hook = func(point, _ string) error {
				if point != "commit" {
					return nil
				}
				cmd := exec.Command("/bin/sh", "-c", "cd \"$0\" && "+c.move, prefix)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("the user's move failed: %v: %s", err, out)
				}
				return nil
			}
			_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
			if b, _ := os.ReadFile(filepath.Join(e.root, "ran")); strings.Contains(string(b), "planted") {
				t.Fatalf("root ran the script a user put in place of the post-install hook (apply: %v)", err)
			}
			if err == nil || !strings.Contains(err.Error(), "is not the package's") {
				t.Fatalf("apply = %v; want the post-install hook refused as not the package's", err)
			}
			if st := e.scan(item); st.GetCompliant() {
				t.Fatalf("scan = %v; want the package not compliant", st)
			}
			e.m.hook = nil
			resp, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
			if err != nil {
				t.Fatalf("apply after = %v, %v; want the package repaired and its hook run", resp, err)
			}
			if got := e.read("ran"); got != "genuine "+filepath.Join(prefix, filepath.FromSlash(HookPostInstall))+"\n" {
				t.Fatalf("ran = %q; want the package's own hook, run once, with $0 its installed path", got)
			}
			if st := e.scan(item); !st.GetCompliant() {
				t.Fatalf("scan = %v", st)
			}
		})
	}
}
