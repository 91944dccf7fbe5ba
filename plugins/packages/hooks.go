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
// (relative to the prefix). pre-install runs from a verified temporary copy
// before anything is written, and a failure leaves the disk as it was;
// post-install runs from the installed copy once the package is in place,
// and until it succeeds the package is reported not compliant and the
// hook is tried again at the next apply. Both run with the root as their
// working directory and OUTPOST_ROOT, OUTPOST_PREFIX (on disk),
// OUTPOST_PACKAGE, OUTPOST_VERSION and OUTPOST_HOOK in their environment,
// and are killed, with everything they started, at their time limit.
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
		tmp, err := os.CreateTemp("", "outpost-hook-*")
		if err != nil {
			return "", false, err
		}
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(tr, e.Size+1))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil && hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			err = fmt.Errorf("hook %s changed between validation and extraction", name)
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), 0o700)
		}
		if err != nil {
			os.Remove(tmp.Name())
			return "", false, err
		}
		return tmp.Name(), true, nil
	}
}

// runHook runs one hook script and says, on failure, how it failed and
// what it printed.
func (m *Manager) runHook(ctx context.Context, root string, s spec, hook, script string) error {
	timeout := m.hookTimeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	if runtime.GOOS == "windows" {
		cmd = exec.CommandContext(hctx, script)
	} else {
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
	cmd.Stdout, cmd.Stderr = out, out
	isolateHook(cmd)
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	// The parent-death signal of the hook (Linux) is tied to the thread that
	// forks it, not to the process: were that thread to exit (the runtime
	// ends a thread when a goroutine locked to it returns), a healthy hook
	// would be killed. Holding the thread locked from the fork to the reap
	// keeps any other goroutine off it.
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
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
	return m.runHook(ctx, root, s, "pre-install", script)
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
	err := m.runHook(ctx, st.root, s, "post-install", filepath.Join(st.root, filepath.FromSlash(rel)))
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
