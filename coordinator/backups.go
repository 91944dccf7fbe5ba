package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/api"
	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/pkg/fsutil"
)

// BackupConfig has the coordinator take backups (outpost backup) into a
// directory on a schedule. Copy the directory off the machine: a backup
// beside what it backs up survives little.
type BackupConfig struct {
	// Dir receives the backups; empty takes none.
	Dir string `yaml:"dir"`
	// Every is how often (default 24h); a backup is due at start when the
	// newest in Dir is older than that.
	Every time.Duration `yaml:"every"`
	// Keep is how many backups Dir keeps, newest first (default 7).
	Keep int `yaml:"keep"`
	// Recipients are the age public keys (age1...) the backups are
	// encrypted to; Plain writes them unencrypted instead. One of them.
	Recipients []string `yaml:"recipients"`
	Plain      bool     `yaml:"plain"`
	// FileServer also copies each backup into the file server's bucket,
	// under backups/ (which members' read-only credentials do not reach),
	// keeping the newest Keep there too: a copy off this machine.
	FileServer bool `yaml:"file_server"`
}

const (
	backupPrefix       = "outpost-backup-"
	defaultBackupEvery = 24 * time.Hour
	defaultBackupKeep  = 7
)

func (b BackupConfig) validate(dataDir string, fileServer bool) error {
	if b.Dir == "" {
		if b.FileServer {
			return errors.New("backups.file_server needs backups.dir, where each backup is written first")
		}
		return nil
	}
	var errs []error
	if b.FileServer && !fileServer {
		errs = append(errs, errors.New("backups.file_server: no file server is configured (file_server.endpoint)"))
	}
	if inside(b.Dir, dataDir) {
		errs = append(errs, fmt.Errorf("backups.dir %s is inside data_dir %s: each backup would hold the ones before it; put them elsewhere", b.Dir, dataDir))
	}
	if b.Every != 0 && b.Every < time.Minute {
		errs = append(errs, fmt.Errorf("backups.every %v: want 1m or more", b.Every))
	}
	if b.Keep < 0 || b.Keep > 1000 {
		errs = append(errs, fmt.Errorf("backups.keep %d: want 1 to 1000 (0: %d)", b.Keep, defaultBackupKeep))
	}
	if _, err := b.recipients(); err != nil {
		errs = append(errs, err)
	}
	if len(b.Recipients) == 0 && !b.Plain {
		errs = append(errs, errors.New("backups: give recipients (age public keys, from age-keygen) or plain: true; a backup holds the keys that sign policy for every computer"))
	}
	if len(b.Recipients) > 0 && b.Plain {
		errs = append(errs, errors.New("backups: recipients and plain: give one"))
	}
	return errors.Join(errs...)
}

func (b BackupConfig) recipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range b.Recipients {
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(s)), "AGE-SECRET-KEY-") {
			// Never quoted back: it opens every backup made to it.
			return nil, errors.New("backups.recipients: one is a private key (AGE-SECRET-KEY-...): give its public key (age-keygen -y KEYFILE prints it), and keep the private key off this coordinator")
		}
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 {
			return nil, fmt.Errorf("backups.recipients: %q is not an age public key (age1..., as age-keygen prints it)", s)
		}
		out = append(out, rs[0])
	}
	return out, nil
}

// backupMetrics tell whether scheduled backups work.
type backupMetrics struct {
	taken       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// runBackups takes a backup when one is due, until ctx ends.
func (c *Coordinator) runBackups(ctx context.Context, h *api.API) {
	b := c.cfg.Backups
	every, keep := b.Every, b.Keep
	if every == 0 {
		every = defaultBackupEvery
	}
	if keep == 0 {
		keep = defaultBackupKeep
	}
	m := backupMetrics{
		taken: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_coordinator_backups_total",
			Help: "Scheduled backups taken, by result."}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_coordinator_backup_last_success_timestamp_seconds",
			Help: "When the last scheduled backup was written (Unix time); alert when it is older than backups.every."}),
	}
	c.reg.MustRegister(m.taken, m.lastSuccess)
	recipients, _ := b.recipients() // checked by Validate
	if n := fsutil.RemoveOld(b.Dir, func(name string) bool {
		return strings.HasPrefix(name, "."+backupPrefix) && strings.HasSuffix(name, ".tmp")
	}, staleAfter); n > 0 {
		c.log.Info("removed what backups cut short by a stop left in the backups directory", "files", n, "dir", b.Dir)
	}
	for {
		wait := time.Duration(0) // none there: one is due now
		if last, ok := newestBackup(b.Dir); ok {
			m.lastSuccess.Set(float64(last.Unix()))
			wait = time.Until(last.Add(every))
		}
		if wait <= 0 {
			path, err := c.takeBackup(h, b.Dir, recipients)
			if err != nil {
				m.taken.WithLabelValues("failed").Inc()
				c.log.Error("scheduled backup failed; retrying in an hour", "dir", b.Dir, "err", err)
				wait = min(time.Hour, every)
			} else {
				m.taken.WithLabelValues("ok").Inc()
				m.lastSuccess.SetToCurrentTime()
				c.log.Info("scheduled backup written", "file", path)
				pruneBackups(b.Dir, keep, c.log)
				wait = every
				if b.FileServer && c.files != nil {
					if err := copyOffMachine(ctx, c.files, path, keep); err != nil {
						m.taken.WithLabelValues("file_server_failed").Inc()
						c.log.Error("copy the scheduled backup to the file server", "file", path, "err", err)
					} else {
						c.log.Info("scheduled backup copied to the file server", "object", "backups/"+filepath.Base(path))
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// takeBackup writes one backup into dir, whole or not at all.
func (c *Coordinator) takeBackup(h *api.API, dir string, recipients []age.Recipient) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	now := time.Now().UTC()
	name := backupPrefix + now.Format("20060102T150405Z") + ".tar.gz"
	if len(recipients) > 0 {
		name += ".age"
	}
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return "", err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // gone by the rename, unless something failed
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := h.WriteBackup(f, now, recipients...); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, fsutil.Rename(f.Name(), path)
}

// backupFiles lists the backups in dir, oldest first (their names sort by
// time). Only names takeBackup gives count: another file named like one
// (an operator's copy) would sort as the newest, be kept, and have the
// backup just written pruned. One dated after now (written while the
// clock was ahead) is left alone: as the newest, it would put the next
// backup off until that date.
func backupFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	now := time.Now()
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && (strings.HasSuffix(n, ".tar.gz") || strings.HasSuffix(n, ".tar.gz.age")) {
			if t, ok := backupTime(n); ok && !t.After(now) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// backupTime is the time in a backup's name.
func backupTime(name string) (time.Time, bool) {
	stamp, _, _ := strings.Cut(strings.TrimPrefix(name, backupPrefix), ".")
	t, err := time.Parse("20060102T150405Z", stamp)
	return t, err == nil
}

// newestBackup is when the newest backup in dir was taken.
func newestBackup(dir string) (time.Time, bool) {
	files := backupFiles(dir)
	if len(files) == 0 {
		return time.Time{}, false
	}
	return backupTime(files[len(files)-1])
}

// pruneBackups deletes the oldest backups beyond keep.
func pruneBackups(dir string, keep int, log interface{ Warn(string, ...any) }) {
	files := backupFiles(dir)
	for len(files) > keep {
		if err := os.Remove(filepath.Join(dir, files[0])); err != nil {
			log.Warn("remove an old backup", "file", files[0], "err", err)
		}
		files = files[1:]
	}
}

// inside says whether path is dir or below it.
func inside(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && (rel == "." || !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != "..")
}

// copyOffMachine stores a backup file in the file server's bucket and
// deletes the oldest there beyond keep.
func copyOffMachine(ctx context.Context, files *artifacts.Store, path string, keep int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := files.PutBackup(ctx, filepath.Base(path), f, st.Size()); err != nil {
		return err
	}
	names, err := files.Backups(ctx)
	if err != nil {
		return err
	}
	var ours []string
	now := time.Now()
	for _, n := range names {
		// Only names takeBackup gives, as in backupFiles.
		if t, ok := backupTime(n); ok && strings.HasPrefix(n, backupPrefix) && !t.After(now) {
			ours = append(ours, n)
		}
	}
	for len(ours) > keep {
		if err := files.RemoveBackup(ctx, ours[0]); err != nil {
			return err
		}
		ours = ours[1:]
	}
	return nil
}

// staleAfter is how old a temporary file of a backup must be to be taken
// for one a stop cut short (a copy of the store, a half-written backup),
// which nothing else removes, not one being written.
const staleAfter = 6 * time.Hour
