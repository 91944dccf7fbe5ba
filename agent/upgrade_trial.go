package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// A restart into a new version is a trial until the new version has run
// for a while and checked in: the version it replaced is kept, and a new
// version that stops again and again before then is rolled back. The
// checks before the restart (--version, --check-config) catch a file that
// cannot run; this catches one that runs and then fails.
//
// The state is in <data_dir>/upgrade: previous (the executable replaced),
// trial.json (the trial under way) and refused.json (versions rolled back,
// by their SHA-256, never restarted into again).

// trialStarts is how many starts of a new version may end before it has
// checked in and run for trialStable; the next start rolls back.
const trialStarts = 3

// trialStable is how long a new version runs, checked in, before its trial
// ends and the version it replaced is let go.
const trialStable = 10 * time.Minute

// trialStableFast is trialStable for Config.Fast (tests, the demo).
const trialStableFast = 5 * time.Second

type trial struct {
	// Path is the executable's path; the rollback puts the previous file
	// back there. Link is what Path pointed to when it was a symlink (a
	// package manager that switches a link between versions): the
	// rollback points it back there.
	Path string `json:"path"`
	Link string `json:"link,omitempty"`
	From string `json:"from"` // the version replaced
	To   string `json:"to"`   // the version on trial
	// SHA256 is the new executable's, as it was checked: a trial is of
	// that file only. PrevSHA256 is the kept copy's.
	SHA256     string    `json:"sha256"`
	PrevSHA256 string    `json:"prev_sha256"`
	Starts     int       `json:"starts"`
	Since      time.Time `json:"since"`
}

// refusal is a version rolled back, never restarted into again, and what
// to put back should it be found running (restarted after its package
// put it back).
type refusal struct {
	SHA256  string    `json:"sha256"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	// RolledBackTo is the version that runs instead, PrevSHA256 its
	// file's (the kept copy), Path and Link where it goes.
	RolledBackTo string `json:"rolled_back_to"`
	PrevSHA256   string `json:"prev_sha256"`
	Path         string `json:"path"`
	Link         string `json:"link,omitempty"`
}

// maxRefusals bounds refused.json.
const maxRefusals = 16

func upgradeDir(dataDir string) string { return filepath.Join(dataDir, "upgrade") }

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func bytesSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PrepareTrial keeps the image at running (the executable this process
// runs) as the version to roll back to, and records the trial of the file
// at path. The agent does this itself before it restarts (prepare); this
// form is for tools and tests.
func PrepareTrial(dataDir, path, running, from, to string) error {
	f, err := os.Open(running)
	if err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	defer f.Close()
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("hash the new executable: %w", err)
	}
	return prepareTrial(dataDir, path, f, from, to, sum)
}

// prepareTrial keeps image (the running version, read from its start)
// and records the trial of the new file at path, whose SHA-256 as checked
// is sum. A trial under way is never replaced: the version on trial must
// pass before another upgrade starts (the loop waits), so the copy kept is
// always of a version that passed.
func prepareTrial(dataDir, path string, image io.ReadSeeker, from, to, sum string) error {
	dir := upgradeDir(dataDir)
	if _, err := image.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	img, err := io.ReadAll(image)
	if err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	prev := bytesSHA256(img)
	if b, err := os.ReadFile(filepath.Join(dir, "trial.json")); err == nil {
		var t trial
		if json.Unmarshal(b, &t) == nil && t.SHA256 == prev {
			return fmt.Errorf("version %s is on trial itself: it is kept, or rolled back, before another upgrade", t.To)
		}
	}
	if prev == sum {
		return fmt.Errorf("keep the running version to roll back to: what this system shows as the running image is the new file")
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "previous"), img, 0o700); err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	t := trial{Path: path, From: from, To: to, SHA256: sum, PrevSHA256: prev, Since: time.Now().UTC()}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if t.Link, err = os.Readlink(path); err != nil {
			return fmt.Errorf("read the symlink %s: %w", path, err)
		}
	}
	b, _ := json.Marshal(t)
	return fsutil.WriteFileAtomic(filepath.Join(dir, "trial.json"), b, 0o600)
}

// Trial is a new version's trial as its start found it; nil when none.
type Trial struct {
	dataDir string
	t       trial
	// ended is set once the trial passed: nothing writes it again.
	ended atomic.Bool
}

// Active says whether the trial is under way: another upgrade waits.
func (t *Trial) Active() bool { return t != nil && !t.ended.Load() }

// BeginTrial is called at every start, before the agent runs; running is
// the executable this process runs.
//   - When running is a version rolled back before (restarted after its
//     package put it back), the version it was rolled back to goes back in
//     its place: rollback is the path to exec.
//   - On a trial of running, it counts the start; when the version on
//     trial has started trialStarts times already without passing, it is
//     refused for good and the previous version goes back in its place.
//   - A trial of another file (replaced by hand since) is dropped.
//
// The kept copy of the previous version stays while a trial is under way
// or while a version rolled back to it runs, and goes with the rest.
func BeginTrial(dataDir, running string) (tr *Trial, rollback string, err error) {
	dir := upgradeDir(dataDir)
	fsutil.RemoveLeftovers(filepath.Join(dir, "previous"), time.Hour) // a kill while it was written
	tb, terr := os.ReadFile(filepath.Join(dir, "trial.json"))
	refusals := loadRefusals(dataDir)
	_, perr := os.Stat(filepath.Join(dir, "previous"))
	if errors.Is(terr, os.ErrNotExist) && len(refusals) == 0 {
		if perr == nil {
			os.Remove(filepath.Join(dir, "previous")) // left by a kill in prepareTrial
		}
		return nil, "", nil
	}
	sum, err := fileSHA256(running)
	if err != nil {
		return nil, "", fmt.Errorf("hash the running executable: %w", err)
	}
	for _, r := range refusals {
		if r.SHA256 == sum && r.Path != "" {
			if err := restorePrevious(dataDir, r.Path, r.Link, r.PrevSHA256); err != nil {
				return nil, "", fmt.Errorf("version %s, rolled back before, runs again and cannot be replaced: %w", r.Version, err)
			}
			os.Remove(filepath.Join(dir, "trial.json"))
			return nil, r.Path, nil
		}
	}
	var t trial
	if terr != nil || json.Unmarshal(tb, &t) != nil || t.Path == "" || t.SHA256 == "" || t.SHA256 != sum {
		// No trial of this file. Keep the copy only for a version
		// rolled back to it, whose refused file may come back.
		os.Remove(filepath.Join(dir, "trial.json"))
		if n := len(refusals); n == 0 || refusals[n-1].PrevSHA256 != sum {
			os.Remove(filepath.Join(dir, "previous"))
		}
		return nil, "", nil
	}
	if t.Starts >= trialStarts {
		reason := fmt.Sprintf("version %s stopped %d times before its upgrade was kept (it must check in and run a while); rolled back to %s",
			t.To, t.Starts, t.From)
		if at, what, ok := lastHang(dataDir); ok && !at.Before(t.Since.Truncate(time.Second)) {
			reason += fmt.Sprintf("; the last time it hung: %s (goroutine stacks in %s)", what, filepath.Join(dataDir, hangFile))
		}
		if err := rollBack(dataDir, t, reason); err != nil {
			return nil, "", err
		}
		return nil, t.Path, nil
	}
	t.Starts++
	b, _ := json.Marshal(t)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "trial.json"), b, 0o600); err != nil {
		return nil, "", fmt.Errorf("count the start of the upgrade's trial: %w", err)
	}
	return &Trial{dataDir: dataDir, t: t}, "", nil
}

// rollBack refuses the version on trial first, then puts the previous one
// back in its place, then ends the trial: a crash part way leaves the
// refusal, and the next start, of whichever file it finds, finishes (a
// refused file running is replaced again; the previous one running drops
// the trial).
func rollBack(dataDir string, t trial, reason string) error {
	refusals := loadRefusals(dataDir)
	refusals = append(refusals, refusal{SHA256: t.SHA256, Version: t.To, Reason: reason, At: time.Now().UTC(),
		RolledBackTo: t.From, PrevSHA256: t.PrevSHA256, Path: t.Path, Link: t.Link})
	if len(refusals) > maxRefusals {
		refusals = refusals[len(refusals)-maxRefusals:]
	}
	b, _ := json.Marshal(refusals)
	if err := fsutil.WriteFileAtomic(filepath.Join(upgradeDir(dataDir), "refused.json"), b, 0o600); err != nil {
		return fmt.Errorf("remember the version rolled back: %w", err)
	}
	if err := restorePrevious(dataDir, t.Path, t.Link, t.PrevSHA256); err != nil {
		return fmt.Errorf("roll back to version %s: %w", t.From, err)
	}
	os.Remove(filepath.Join(upgradeDir(dataDir), "trial.json"))
	return nil
}

// restorePrevious puts the kept copy back at path, checked against its
// SHA-256 first (a damaged copy is not run as root). Through a symlink
// (link, as it was read before the upgrade), the link is pointed back at
// its old target, which gets the copy's bytes if it lost them; otherwise
// the copy is written in place (copied, not renamed: the data directory
// and the executable's may be on different file systems).
func restorePrevious(dataDir, path, link, want string) error {
	img, err := os.ReadFile(filepath.Join(upgradeDir(dataDir), "previous"))
	if err != nil {
		return fmt.Errorf("the kept copy of the previous version: %w", err)
	}
	if want != "" && bytesSHA256(img) != want {
		return errors.New("the kept copy of the previous version is damaged (its SHA-256 differs)")
	}
	if link == "" {
		return fsutil.WriteFileAtomic(path, img, 0o755)
	}
	target := link
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(path), target)
	}
	if sum, err := fileSHA256(target); err != nil || sum != want {
		if err := fsutil.WriteFileAtomic(target, img, 0o755); err != nil {
			return err
		}
	}
	tmp := path + ".outpost-rollback"
	os.Remove(tmp)
	if err := os.Symlink(link, tmp); err != nil {
		return err
	}
	return fsutil.Rename(tmp, path)
}

func endTrial(dataDir string) {
	dir := upgradeDir(dataDir)
	os.Remove(filepath.Join(dir, "trial.json"))
	os.Remove(filepath.Join(dir, "previous"))
}

func loadRefusals(dataDir string) []refusal {
	b, err := os.ReadFile(filepath.Join(upgradeDir(dataDir), "refused.json"))
	if err != nil {
		return nil
	}
	var out []refusal
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// refusedFor says why a file with this SHA-256 was rolled back, if it was.
func refusedFor(dataDir, sum string) (string, bool) {
	for _, r := range loadRefusals(dataDir) {
		if r.SHA256 == sum {
			return r.Reason, true
		}
	}
	return "", false
}

// rolledBackTo is why this version runs after a rollback, when the newest
// rollback was to it: said at check-in while no upgrade is pending.
func rolledBackTo(dataDir, version string) string {
	rs := loadRefusals(dataDir)
	if len(rs) == 0 || rs[len(rs)-1].RolledBackTo != version {
		return ""
	}
	return rs[len(rs)-1].Reason
}

// Stopped undoes the count of this start when the agent was stopped on
// purpose (a signal, or a restart that is no failure): a stop is not a
// failure of the new version.
func (t *Trial) Stopped() {
	if t == nil || t.ended.Load() {
		return
	}
	t.t.Starts--
	b, _ := json.Marshal(t.t)
	_ = fsutil.WriteFileAtomic(filepath.Join(upgradeDir(t.dataDir), "trial.json"), b, 0o600)
}

// WithTrial makes the agent end the trial of its version once it has
// checked in and run for trialStable: the version it replaced is let go.
func WithTrial(t *Trial) Option { return func(a *Agent) { a.trial = t } }

// watchTrial ends the trial once the agent has run for stable and checked
// in since it started.
func (a *Agent) watchTrial(ctx context.Context, started time.Time, stable time.Duration) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ok := a.lastCheckinOK.Load()
		if time.Since(started) < stable || ok == nil || ok.(time.Time).Before(started) {
			continue
		}
		a.trial.ended.Store(true)
		endTrial(a.trial.dataDir)
		a.log.Info("the new version ran and checked in: its upgrade is kept", "version", Version, "replaced", a.trial.t.From)
		return nil
	}
}
