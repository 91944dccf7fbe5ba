package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/outposthq/outpost/coordinator/internal/backup"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// BackupSHA256Trailer carries the SHA-256 of the whole body of a backup
// once it is sent: a client that gets the trailer and finds the same hash
// got the backup whole.
const BackupSHA256Trailer = "X-Outpost-Backup-Sha256"

// minPassphrase is the shortest passphrase a backup is encrypted with.
const minPassphrase = 12

// maxRecipients bounds the public keys one backup is encrypted to.
const maxRecipients = 20

// takeBackup streams the coordinator's whole state (backup package),
// encrypted with age to the recipients or the passphrase given, or plain
// when asked so in as many words. The body goes out as it is made; a
// failure half-way breaks the connection, and the trailer is then missing.
func (a *API) takeBackup(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Recipients []string `json:"recipients"`
		Passphrase string   `json:"passphrase"`
		Plain      bool     `json:"plain"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if a.d.DataDir == "" {
		return httpError(http.StatusNotImplemented, "backups are not enabled on this coordinator")
	}
	var recipients []age.Recipient
	how := ""
	switch {
	case len(in.Recipients) > 0 && in.Passphrase == "" && !in.Plain:
		if len(in.Recipients) > maxRecipients {
			return httpError(http.StatusBadRequest, "%d recipients: the limit is %d", len(in.Recipients), maxRecipients)
		}
		for _, s := range in.Recipients {
			if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(s)), "AGE-SECRET-KEY-") {
				// Never quoted back: it opens every backup made to it.
				return httpError(http.StatusBadRequest, "a recipient is a private key (AGE-SECRET-KEY-...): give its public key (age-keygen -y KEYFILE prints it), and keep the private key off this coordinator")
			}
			rs, err := age.ParseRecipients(strings.NewReader(s))
			if err != nil || len(rs) != 1 {
				return httpError(http.StatusBadRequest, "recipient %q is not an age public key (age1..., as age-keygen prints it)", truncate(s, 80))
			}
			recipients = append(recipients, rs[0])
		}
		how = fmt.Sprintf("encrypted to %d recipients", len(recipients))
	case in.Passphrase != "" && len(in.Recipients) == 0 && !in.Plain:
		if len([]rune(in.Passphrase)) < minPassphrase {
			return httpError(http.StatusBadRequest, "the passphrase is shorter than %d characters", minPassphrase)
		}
		sr, err := age.NewScryptRecipient(in.Passphrase)
		if err != nil {
			return httpError(http.StatusBadRequest, "passphrase: %v", err)
		}
		recipients, how = []age.Recipient{sr}, "encrypted with a passphrase"
	case in.Plain && len(in.Recipients) == 0 && in.Passphrase == "":
		how = "not encrypted"
	default:
		return httpError(http.StatusBadRequest, "give recipients (age public keys), a passphrase, or plain: true — exactly one; "+
			"a backup holds the keys that sign policy for every computer")
	}
	now := time.Now()
	name := "outpost-backup-" + now.UTC().Format("20060102T150405Z") + ".tar.gz"
	if len(recipients) > 0 {
		name += ".age"
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Trailer", BackupSHA256Trailer)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	h := sha256.New()
	cw := &backup.CountingWriter{W: io.MultiWriter(w, h)}
	m, err := a.WriteBackup(cw, now, recipients...)
	if err != nil {
		a.log.Error("backup failed", "err", err, "sent", cw.N)
		a.audit(r, "backup", "coordinator", fmt.Sprintf("failed after %d bytes: %v", cw.N, err))
		panic(http.ErrAbortHandler) // no trailer: the client knows it is not whole
	}
	w.Header().Set(BackupSHA256Trailer, hex.EncodeToString(h.Sum(nil)))
	a.log.Info("backup taken", "bytes", cw.N, "files", len(m.Files), "how", how)
	a.audit(r, "backup", "coordinator", fmt.Sprintf("%s, %d bytes, %d files", how, cw.N, len(m.Files)))
	return nil
}

// WriteBackup writes a backup of the coordinator (backup package) to w,
// encrypted to recipients (none: plain).
func (a *API) WriteBackup(w io.Writer, now time.Time, recipients ...age.Recipient) (*backup.Manifest, error) {
	if a.d.DataDir == "" {
		return nil, errors.New("backups are not enabled on this coordinator")
	}
	return backup.Write(w, backup.Source{DataDir: a.d.DataDir, Version: a.d.Version, CAFingerprint: a.d.CAFingerprint, Now: now,
		Store: func(fn func(backup.Snapshot) error) error {
			return a.d.Store.Snapshot(func(s store.Snapshot) error { return fn(s) })
		}}, recipients...)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RaiseRevision signs the office's policy again at a revision above
// above: after a restore from a backup, members hold revisions the store
// never saw, and refuse any that is not newer (quicsrv's catch-up).
func (a *API) RaiseRevision(office string, above uint64) error {
	raised, err := a.d.Store.RaiseRevision(office, above)
	if err != nil || !raised {
		return err
	}
	rev, err := a.republish(office)
	if err != nil {
		return err
	}
	a.log.Info("office's revision moved past what its members hold", "office", office, "held", above, "revision", rev)
	return nil
}
