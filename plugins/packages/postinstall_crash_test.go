//go:build unix

package packages

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// helperEnv, set in the environment of this test binary run again, makes
// TestApplyHelperProcess apply one package as a plugin process would.
const helperEnv = "OUTPOST_PACKAGES_TEST_HELPER"

// TestApplyHelperProcess is not a test: run as a subprocess with helperEnv
// set, it applies the package its environment describes and exits. It
// stands in for the plugin process, so that a test can kill it mid-apply.
func TestApplyHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "apply" {
		t.Skip("helper process for TestPostInstallCutShortByCrash")
	}
	size, _ := strconv.ParseInt(os.Getenv("HELPER_SIZE"), 10, 64)
	art := &wire.Artifact{Sha256: os.Getenv("HELPER_SHA256"), Size: size, Name: "pkg.tar.gz"}
	item := pkgItem(os.Getenv("HELPER_NAME"), os.Getenv("HELPER_VERSION"), "", wire.State_STATE_PRESENT, art)
	_, err := New(logging.Discard()).Apply(context.Background(), &proto.ApplyRequest{
		Root: os.Getenv("HELPER_ROOT"), Item: item, ArtifactPath: os.Getenv("HELPER_ARTIFACT"),
	})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestPostInstallCutShortByCrash: the plugin process is killed (kill -9)
// while the post-install hook runs, and the hook's process group is
// terminated too, as systemd's cgroup kill, the OOM killer or a power loss
// would. The manifest of the new version is already committed; the hook
// must still count as not done: the package is not compliant until the
// next Apply has run the hook to completion.
func TestPostInstallCutShortByCrash(t *testing.T) {
	e := newEnv(t)
	// The first run announces itself and hangs until killed; a later run
	// completes.
	post := exe(HookPostInstall, `#!/bin/sh
if [ ! -e "$OUTPOST_ROOT/post-started" ]; then
	echo $$ > "$OUTPOST_ROOT/post-started.tmp"
	mv "$OUTPOST_ROOT/post-started.tmp" "$OUTPOST_ROOT/post-started"
	sleep 60
fi
echo done >> "$OUTPOST_ROOT/post.log"
`)
	p, art := e.artifact(targz(t, exe("bin/tool", "#!/bin/sh\necho tool\n"), post))
	item := pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, art)

	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyHelperProcess$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=apply",
		"HELPER_ROOT="+e.root,
		"HELPER_ARTIFACT="+p,
		"HELPER_SHA256="+art.GetSha256(),
		"HELPER_SIZE="+strconv.FormatInt(art.GetSize(), 10),
		"HELPER_NAME=tool",
		"HELPER_VERSION=1.0",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helperPid := cmd.Process.Pid
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = syscall.Kill(-helperPid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})

	// Wait for the hook to be running.
	started := filepath.Join(e.root, "post-started")
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, err := os.Stat(started)
		return err == nil
	}, "the post-install hook never started")
	b, err := os.ReadFile(started)
	must(t, err)
	hookPid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, err)
	t.Cleanup(func() { _ = syscall.Kill(-hookPid, syscall.SIGKILL) })

	// The crash: the plugin is killed outright, the hook's group stopped.
	must(t, syscall.Kill(-helperPid, syscall.SIGKILL))
	_ = cmd.Wait()
	waited = true
	if err := syscall.Kill(-hookPid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatal(err)
	}

	if mf, err := Installed(e.root, "tool"); err != nil || mf == nil || mf.Version != "1.0" {
		t.Fatalf("manifest after the crash = %+v, %v; want 1.0 committed (the hook runs after the commit)", mf, err)
	}
	if e.exists("post.log") {
		t.Fatal("the hook completed although it was killed")
	}

	// The restarted plugin: a new Manager in a new process.
	e.m = New(logging.Discard())
	st := e.scan(item)
	if st.GetCompliant() || !strings.Contains(st.GetMessage(), "post-install hook has not succeeded") {
		t.Fatalf("scan after the crash = %v; want not compliant, the post-install hook pending", st)
	}
	resp, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
	if err != nil || !resp.GetChanged() || !strings.Contains(resp.GetMessage(), "post-install hook succeeded on retry") {
		t.Fatalf("apply after the crash = %v, %v; want the hook run again", resp, err)
	}
	if got := e.read("post.log"); got != "done\n" {
		t.Fatalf("post.log = %q, want the hook run to completion once", got)
	}
	if st := e.scan(item); !st.GetCompliant() {
		t.Fatalf("scan after the hook succeeded = %v", st)
	}
	// And it is done: the next Apply does not run it again.
	resp, err = e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
	if err != nil || resp.GetChanged() {
		t.Fatalf("apply once compliant = %v, %v; want nothing to do", resp, err)
	}
	if got := e.read("post.log"); got != "done\n" {
		t.Fatalf("post.log = %q: the hook ran again once it had succeeded", got)
	}
}

// TestPostInstallRunsAfterInterruptedCommit: a crash just before the
// manifest is committed leaves every file in place and a journal; the next
// Apply finishes the install from the journal, and must then run the
// post-install hook that never ran.
func TestPostInstallRunsAfterInterruptedCommit(t *testing.T) {
	e := newEnv(t)
	entries := []ent{
		exe("bin/hello", "#!/bin/sh\necho hello\n"),
		exe(HookPostInstall, "#!/bin/sh\necho ran >> \"$OUTPOST_ROOT/post.log\"\n"),
	}
	installCrashing(t, e, "commit", 1, "1.0.0", entries)
	if e.exists("post.log") {
		t.Fatal("the hook ran before the commit")
	}
	p, art := e.artifact(targz(t, entries...))
	item := pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, art)
	resp, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
	if err != nil || !resp.GetChanged() {
		t.Fatalf("apply after the crash = %v, %v; want the post-install hook run", resp, err)
	}
	if !e.exists("post.log") || e.read("post.log") != "ran\n" {
		t.Fatal("the post-install hook of the recovered install never ran")
	}
	if st := e.scan(item); !st.GetCompliant() {
		t.Fatalf("scan = %v", st)
	}
}
