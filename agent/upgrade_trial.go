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
	// back there.
	Path string `json:"path"`
	From string `json:"from"` // the version replaced
	To   string `json:"to"`   // the version on trial
	// SHA256 is the new executable's: a trial is of that file only.
	SHA256 string    `json:"sha256"`
	Starts int       `json:"starts"`
	Since  time.Time `json:"since"`
}

// refusal is a version rolled back, never restarted into again.
type refusal struct {
	SHA256  string    `json:"sha256"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	// RolledBackTo is the version that runs instead.
	RolledBackTo string `json:"rolled_back_to"`
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

// PrepareTrial is called, the agent stopped, right before it restarts into
// the new executable at path: it keeps the running image (running, e.g.
// /proc/self/exe) as the version to roll back to, and records the trial.
func PrepareTrial(dataDir, path, running, from, to string) error {
	dir := upgradeDir(dataDir)
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("hash the new executable: %w", err)
	}
	img, err := os.ReadFile(running)
	if err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "previous"), img, 0o755); err != nil {
		return fmt.Errorf("keep the running version to roll back to: %w", err)
	}
	b, _ := json.Marshal(trial{Path: path, From: from, To: to, SHA256: sum, Since: time.Now().UTC()})
	return fsutil.WriteFileAtomic(filepath.Join(dir, "trial.json"), b, 0o600)
}

// Trial is a new version's trial as its start found it; nil when none.
type Trial struct {
	dataDir string
	t       trial
	// ended is set once the trial passed: nothing writes it again.
	ended atomic.Bool
}

// BeginTrial is called at every start, before the agent runs. On a trial
// of the running executable (running: its image; its SHA-256 is the
// trial's) it counts the start. When the version on trial has started
// trialStarts times already without passing, it puts the previous version
// back at the trial's path, refuses the new one for good and returns that
// path as rollback: the caller execs it. A trial of another file (replaced
// by hand since) is dropped.
func BeginTrial(dataDir, running string) (tr *Trial, rollback string, err error) {
	dir := upgradeDir(dataDir)
	b, err := os.ReadFile(filepath.Join(dir, "trial.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read the upgrade's trial: %w", err)
	}
	var t trial
	if err := json.Unmarshal(b, &t); err != nil || t.Path == "" || t.SHA256 == "" {
		os.Remove(filepath.Join(dir, "trial.json"))
		return nil, "", nil // damaged: no trial to keep
	}
	sum, err := fileSHA256(running)
	if err != nil {
		return nil, "", fmt.Errorf("hash the running executable: %w", err)
	}
	if sum != t.SHA256 {
		endTrial(dataDir)
		return nil, "", nil
	}
	if t.Starts >= trialStarts {
		reason := fmt.Sprintf("version %s stopped %d times before its upgrade was kept (it must check in and run a while); rolled back to %s",
			t.To, t.Starts, t.From)
		if err := rollBack(dataDir, t, reason); err != nil {
			return nil, "", err
		}
		return nil, t.Path, nil
	}
	t.Starts++
	b, _ = json.Marshal(t)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "trial.json"), b, 0o600); err != nil {
		return nil, "", fmt.Errorf("count the start of the upgrade's trial: %w", err)
	}
	return &Trial{dataDir: dataDir, t: t}, "", nil
}

// rollBack puts the previous version back at the trial's path (copied
// into place: the data directory and the executable's directory may be
// on different file systems), then refuses the new version and ends the
// trial. A crash part way leaves the trial, and the next start rolls back
// again.
func rollBack(dataDir string, t trial, reason string) error {
	dir := upgradeDir(dataDir)
	img, err := os.ReadFile(filepath.Join(dir, "previous"))
	if err != nil {
		return fmt.Errorf("roll back to version %s: %w", t.From, err)
	}
	if err := fsutil.WriteFileAtomic(t.Path, img, 0o755); err != nil {
		return fmt.Errorf("roll back to version %s: %w", t.From, err)
	}
	refusals := loadRefusals(dataDir)
	refusals = append(refusals, refusal{SHA256: t.SHA256, Version: t.To, Reason: reason, At: time.Now().UTC(), RolledBackTo: t.From})
	if len(refusals) > maxRefusals {
		refusals = refusals[len(refusals)-maxRefusals:]
	}
	b, _ := json.Marshal(refusals)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "refused.json"), b, 0o600); err != nil {
		return fmt.Errorf("remember the version rolled back: %w", err)
	}
	endTrial(dataDir)
	return nil
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
// rollback was to it: said at check-in until an upgrade passes.
func rolledBackTo(dataDir, version string) string {
	rs := loadRefusals(dataDir)
	if len(rs) == 0 || rs[len(rs)-1].RolledBackTo != version {
		return ""
	}
	return rs[len(rs)-1].Reason
}

// Stopped undoes the count of this start when the agent was stopped on
// purpose (a signal): a stop is not a failure of the new version.
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
