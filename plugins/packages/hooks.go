package packages

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// Hooks a package may carry, as files at these paths inside its archive
// (relative to the prefix). pre-install runs before anything is written,
// and a failure leaves the disk as it was; post-install runs once the
// package is in place, and until it succeeds the package is reported not
// compliant and the hook is tried again at the next apply. Each runs, with
// /bin/sh, from a private copy checked against the hash the archive (or,
// for post-install, the manifest) has for it, never from a path others may
// be able to write: post-install sees its installed path as $0, and one
// changed on disk since it was installed is not run (the package is
// drifted, and the next apply repairs it). Both run with the root as their
// working directory and OUTPOST_ROOT, OUTPOST_PREFIX (on disk),
// OUTPOST_PACKAGE, OUTPOST_VERSION and OUTPOST_HOOK in their environment,
// and are killed, with everything they started, at their time limit; what
// a hook leaves running in its process group when it exits is killed then
// (a service it starts must have left the group by then: systemctl,
// start-stop-daemon --background), and its exit status decides.
const (
	HookPreInstall  = ".outpost/pre-install"
	HookPostInstall = ".outpost/post-install"
)

// DefaultHookTimeout bounds a hook unless WithHookTimeout says otherwise.
const DefaultHookTimeout = 5 * time.Minute

// HookTimeoutEnv names the environment variable (a Go duration) that sets
// the hook time limit of the plugin process.
const HookTimeoutEnv = "OUTPOST_HOOK_TIMEOUT"

// WithHookTimeout sets the time limit of each hook.
func WithHookTimeout(d time.Duration) Option { return func(m *Manager) { m.hookTimeout = d } }

// HookTimeoutFromEnv returns $OUTPOST_HOOK_TIMEOUT, or DefaultHookTimeout.
func HookTimeoutFromEnv() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(HookTimeoutEnv)); err == nil && d > 0 {
		return d
	}
	return DefaultHookTimeout
}

// maxHookOutput is how much of a failed hook's output its error quotes.
const maxHookOutput = 1024

// outputWait is how long, once a hook or dpkg has exited, what it started
// may still hold its output open before the plugin stops reading it.
const outputWait = 2 * time.Second

// extractHook copies hook name out of the archive into a temporary file,
// checked against the hash the validated plan has for it. ok is false when
// the package has no such hook.
func extractHook(artifactPath string, plan *Plan, name string) (path string, ok bool, err error) {
	e, found := plan.entry(name)
	if !found || e.Type != TypeFile {
		return "", false, nil
	}
	f, err := os.Open(artifactPath)
	if err != nil {
		return "", false, fmt.Errorf("open artifact: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return "", false, fmt.Errorf("read artifact: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", false, fmt.Errorf("hook %s is in the plan but not in the archive", name)
		}
		if err != nil {
			return "", false, fmt.Errorf("read artifact: %w", err)
		}
		if strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/") != name {
			continue
		}
		p, err := copyVerified(tr, e.Size, e.SHA256)
		if err != nil {
			return "", false, fmt.Errorf("hook %s: %w", name, err)
		}
		return p, true, nil
	}
}

// copyInstalledHook copies the installed file name (prefix-relative) of
// package mf into a private temporary file, checked against its manifest
// entry f, for it to run from: the folder the hook is installed in may be
// writable by others (a folder the archive makes 0777, a prefix a service
// account owns), who could otherwise put a script of their own there for
// root to run.
func copyInstalledHook(root string, mf *Manifest, name string, f File) (string, error) {
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(mf.prefixRel())))
	if err != nil {
		return "", err
	}
	defer pr.Close()
	return copyHook(pr, name, f)
}

// copyHook copies the regular file name in pr to a private temporary file
// if it is exactly f; the error says otherwise.
func copyHook(pr *os.Root, name string, f File) (string, error) {
	in, err := openRegular(pr, name)
	if err != nil {
		return "", fmt.Errorf("/%s is not the package's: %w", f.Path, err)
	}
	defer in.Close()
	p, err := copyVerified(in, f.Size, f.SHA256)
	switch {
	case errors.Is(err, errNotAsChecked):
		return "", fmt.Errorf("/%s is not the package's: %w", f.Path, err)
	case err != nil:
		return "", fmt.Errorf("copy /%s to run it: %w", f.Path, err)
	}
	return p, nil
}

// errNotAsChecked is what copyVerified says of content that is not what
// was checked.
var errNotAsChecked = errors.New("changed since it was checked")

// copyVerified copies r into a new temporary file that only root may
// read, write or run, and returns its path if what it copied was size
// bytes with the SHA-256 sum.
func copyVerified(r io.Reader, size int64, sum string) (string, error) {
	tmp, err := os.CreateTemp("", "outpost-hook-*")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != size || hex.EncodeToString(h.Sum(nil)) != sum) {
		err = fmt.Errorf("%w (%d bytes, sha256 %s; want %d bytes, sha256 %s)", errNotAsChecked, n, short(hex.EncodeToString(h.Sum(nil))), size, short(sum))
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o700)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// runHook runs one hook from script, a private copy (see copyVerified),
// and says, on failure, how it failed and what it printed. as, if not
// empty, is the path the script is shown at ($0): where it is installed.
func (m *Manager) runHook(ctx context.Context, root string, s spec, hook, script, as string) error {
	timeout := m.hookTimeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	switch {
	case runtime.GOOS == "windows":
		cmd = exec.CommandContext(hctx, script)
	case as != "":
		// The copy runs as if it were the installed file: a script that
		// finds its files from $0 still does.
		cmd = exec.CommandContext(hctx, "/bin/sh", "-c", ". "+shellQuote(script), as)
	default:
		cmd = exec.CommandContext(hctx, "/bin/sh", script)
	}
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"OUTPOST_ROOT="+root,
		"OUTPOST_PREFIX="+filepath.Join(root, filepath.FromSlash(s.prefixRel())),
		"OUTPOST_PACKAGE="+s.name,
		"OUTPOST_VERSION="+s.version,
		"OUTPOST_HOOK="+hook)
	out := &tailBuffer{max: maxHookOutput}
	// The hook writes to a pipe the plugin reads itself, so that waiting
	// for the hook to exit is not waiting for everything that holds the
	// pipe: what the hook left running is killed once it exits (see
	// waitHook), and anything else still holding it is read for
	// outputWait at most.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%s hook of %s %s: %w", hook, s.name, s.version, err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	isolateHook(cmd)
	cmd.WaitDelay = outputWait
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()
	start := time.Now()
	// The parent-death signal of the hook (Linux) is tied to the thread that
	// forks it, not to the process: were that thread to exit (the runtime
	// ends a thread when a goroutine locked to it returns), a healthy hook
	// would be killed. Holding the thread locked from the fork to the reap
	// keeps any other goroutine off it.
	runtime.LockOSThread()
	err = cmd.Start()
	w.Close()
	if err == nil {
		err = waitHook(cmd)
	}
	runtime.UnlockOSThread()
	t := time.NewTimer(outputWait)
	select {
	case <-copied:
	case <-t.C:
	}
	t.Stop()
	r.Close()
	<-copied
	if err == nil {
		m.logger.Info("hook ran", "package", s.name, "hook", hook, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	said := out.String()
	if said != "" {
		said = ": " + said
	}
	if errors.Is(hctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s hook of %s %s timed out after %s and was killed%s", hook, s.name, s.version, timeout, said)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s hook of %s %s was interrupted: %w", hook, s.name, s.version, ctx.Err())
	}
	return fmt.Errorf("%s hook of %s %s failed (%v)%s", hook, s.name, s.version, err, said)
}

// shellQuote quotes s as one word for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tailBuffer keeps the last max bytes written to it: a hook may print for
// its whole time limit, and only the end of what it said is ever quoted, so
// the plugin (running as root) holds no more than that, whatever the hook
// prints. It is safe for concurrent writes, should stdout and stderr be
// copied by two goroutines.
type tailBuffer struct {
	max     int
	mu      sync.Mutex
	buf     []byte // the tail; compacted to max bytes when it reaches 2*max
	dropped bool   // whether anything before buf was written
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		p = p[len(p)-t.max:]
		t.dropped = t.dropped || n > t.max || len(t.buf) > 0
		t.buf = append(t.buf[:0], p...)
		return n, nil
	}
	if len(t.buf)+len(p) > 2*t.max {
		keep := t.max - len(p)
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep:]...)
		t.dropped = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns the last max bytes written, trimmed of surrounding space,
// starting with "…" when earlier output was dropped.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, dropped := t.buf, t.dropped
	if len(b) > t.max {
		b, dropped = b[len(b)-t.max:], true
	}
	if dropped {
		// Dropping stopped at a byte, maybe inside a character.
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	said := strings.TrimSpace(string(b))
	if dropped && said != "" {
		said = "…" + said
	}
	return said
}

// preInstall runs the archive's pre-install hook, if it has one.
func (m *Manager) preInstall(ctx context.Context, root string, s spec, artifactPath string, plan *Plan) error {
	script, ok, err := extractHook(artifactPath, plan, HookPreInstall)
	if err != nil || !ok {
		return err
	}
	defer os.Remove(script)
	return m.runHook(ctx, root, s, "pre-install", script, "")
}

// postInstallMarker holds, while a package's post-install hook fails, why
// it failed. That the hook has yet to succeed is recorded in the manifest
// (Manifest.PostInstallPending); the marker only adds the reason, and is
// also honoured alone, as manifests written before that flag have it.
func (st store) postInstallMarker(name string) string {
	return filepath.Join(st.dir(), name+".post-install-failed")
}

// hasPostInstall reports whether the package has a post-install hook: a
// regular file at HookPostInstall under its prefix.
func (m *Manifest) hasPostInstall() bool {
	rel := m.prefixRel() + "/" + HookPostInstall
	for _, f := range m.Files {
		if f.Path == rel && f.Link == "" {
			return true
		}
	}
	return false
}

// postInstall runs the installed package's post-install hook, if it has
// one. mf is committed with PostInstallPending set before this runs (see
// newManifest), so a crash or a kill while the hook runs leaves the hook
// pending; the flag is cleared, durably, only once the hook succeeds. A
// failure also keeps a marker with the reason.
func (m *Manager) postInstall(ctx context.Context, st store, s spec, mf *Manifest) error {
	marker := st.postInstallMarker(s.name)
	if !mf.hasPostInstall() {
		return st.removeFile(marker)
	}
	if !mf.PostInstallPending {
		// A manifest written before the flag existed, pending only by its
		// failure marker: record the hook as pending before running it.
		mf.PostInstallPending = true
		if err := st.save(mf); err != nil {
			return fmt.Errorf("record that the post-install hook of %s %s is pending: %w", s.name, s.version, err)
		}
	}
	rel := mf.prefixRel() + "/" + HookPostInstall
	var f File
	for _, g := range mf.Files {
		if g.Path == rel {
			f = g
		}
	}
	script, err := copyInstalledHook(st.root, mf, filepath.FromSlash(HookPostInstall), f)
	if err != nil {
		err = fmt.Errorf("post-install hook of %s %s was not run: %w (the next apply repairs the package)", s.name, s.version, err)
	} else {
		defer os.Remove(script)
		err = m.runHook(ctx, st.root, s, "post-install", script, filepath.Join(st.root, filepath.FromSlash(rel)))
	}
	if err != nil {
		if werr := fsutil.WriteFileAtomic(marker, []byte(err.Error()), 0o600); werr != nil {
			m.logger.Error("record failed post-install hook", "package", s.name, "error", werr)
		}
		return err
	}
	mf.PostInstallPending = false
	if err := st.save(mf); err != nil {
		return fmt.Errorf("post-install hook of %s %s succeeded, but recording it failed (it runs again at the next apply): %w", s.name, s.version, err)
	}
	return st.removeFile(marker)
}

// hookInterrupted is why a pending post-install hook with no failure
// recorded has not succeeded.
const hookInterrupted = "it did not run to completion (the plugin was killed or the computer stopped while it ran); it runs again at the next apply"

// pendingPostInstall returns why the post-install hook of the installed
// package mf is still to succeed, or "".
func (st store) pendingPostInstall(mf *Manifest) string {
	if mf == nil {
		return ""
	}
	b, err := os.ReadFile(st.postInstallMarker(mf.Name))
	if err == nil && len(b) > 0 {
		return string(b)
	}
	if mf.PostInstallPending {
		return hookInterrupted
	}
	return ""
}
