package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// backupTrailer is the coordinator's SHA-256 of a whole backup (api).
const backupTrailer = "X-Outpost-Backup-Sha256"

func backupCommands() []*command {
	return []*command{
		{
			name: "backup", args: "FILE", minArgs: 1, maxArgs: 1,
			summary: "save the coordinator's whole state to a file, to restore it after a loss",
			help: `Takes the store while the coordinator runs (offices, members, policies and
their revisions, users, permissions, the patch catalog, the audit trail) with
its data directory: the CA and its key, the policy signing key, the token
signing key and the admin token. With them a new machine takes over: members
keep their certificates and keep trusting the policy it signs. Artifacts
stay on the file server; back up its bucket on its own.

Whoever reads a backup can sign policy for every computer, so it is
encrypted with age (age-encryption.org): to public keys made with age-keygen
(--recipient, --recipients-file: the private key then stays off the
coordinator), or with a passphrase (--passphrase: asked at the terminal, or
read from OUTPOST_BACKUP_PASSPHRASE). --plain writes it unencrypted, if it is
kept encrypted by other means.

FILE is written whole or not at all (mode 0600); - writes to standard output.
The coordinator's hash of what it sent is checked. Needs the admin role.
Restore with: outpost-coordinator restore --data-dir DIR FILE (coordinator
stopped), with --identity KEYFILE (age-keygen's private key) for a backup
encrypted to public keys; --check instead of --data-dir tests it anywhere.

Examples:
  outpost backup --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p outpost.backup
  outpost backup --recipients-file /etc/outpost/backup-recipients.txt /var/backups/outpost-$(date +%F).age
  OUTPOST_BACKUP_PASSPHRASE=... outpost backup --passphrase outpost.backup
`,
			setup: func(fs *flag.FlagSet) runFunc {
				var recipients stringList
				fs.Var(&recipients, "recipient", "encrypt to the age public `KEY` (age1...); may be given several times")
				recipientsFile := fs.String("recipients-file", "", "encrypt to every age public key in `FILE`, one per line")
				passphrase := fs.Bool("passphrase", false, "encrypt with a passphrase (OUTPOST_BACKUP_PASSPHRASE, or asked twice at the terminal)")
				plain := fs.Bool("plain", false, "write the backup unencrypted")
				quiet := fs.Bool("quiet", false, "print no progress or details")
				return func(ctx context.Context, e *env, args []string) error {
					if *recipientsFile != "" {
						b, err := os.ReadFile(*recipientsFile)
						if err != nil {
							return fmt.Errorf("read the recipients: %w", err)
						}
						for _, l := range strings.Split(string(b), "\n") {
							if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
								recipients = append(recipients, l)
							}
						}
						if len(recipients) == 0 {
							return usagef("%s holds no age public key", *recipientsFile)
						}
					}
					for _, r := range recipients {
						if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(r)), "AGE-SECRET-KEY-") {
							return usagef("a recipient is a private key (AGE-SECRET-KEY-...), which must not leave this machine: give its public key (age-keygen -y KEYFILE prints it); nothing was sent")
						}
					}
					body := map[string]any{}
					modes := 0
					if len(recipients) > 0 {
						body["recipients"], modes = []string(recipients), modes+1
					}
					if *passphrase {
						pw, err := backupPassphrase(e)
						if err != nil {
							return err
						}
						body["passphrase"], modes = pw, modes+1
					}
					if *plain {
						body["plain"], modes = true, modes+1
					}
					if modes != 1 {
						return usagef("say how to protect the backup, once: --recipient or --recipients-file (age public keys), --passphrase, or --plain; it holds the keys that sign policy for every computer")
					}
					return takeBackup(ctx, e, args[0], body, *quiet)
				}
			},
		},
	}
}

// backupPassphrase reads the passphrase from OUTPOST_BACKUP_PASSPHRASE, or
// asks twice at the terminal.
func backupPassphrase(e *env) (string, error) {
	if pw := e.getenv("OUTPOST_BACKUP_PASSPHRASE"); pw != "" {
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return "", usagef("--passphrase needs a terminal to ask at, or OUTPOST_BACKUP_PASSPHRASE")
	}
	pw, err := promptPassword(e, f, "Passphrase for the backup: ")
	if err != nil {
		return "", err
	}
	again, err := promptPassword(e, f, "Again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the two passphrases differ")
	}
	return pw, nil
}

func takeBackup(ctx context.Context, e *env, path string, body map[string]any, quiet bool) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := e.api.newRequest(ctx, http.MethodPost, "/v1/backup", nil, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.api.token)
	req.Header.Set("User-Agent", "outpost-cli/"+Version)
	resp, err := e.api.hc.Do(req)
	if err != nil {
		return e.api.transportError(req, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return e.api.statusError(resp, msg)
	}

	var out io.Writer = e.stdout
	var tmp *os.File
	if path != "-" {
		dir := filepath.Dir(path)
		if tmp, err = os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp"); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		if err := tmp.Chmod(0o600); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		out = tmp
	}
	var prog *progress
	if !quiet && path != "-" {
		prog = newProgress(e.stderr, filepath.Base(path), -1, isTerminal(e.stderr), e.now)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h, progressWriter{prog}), resp.Body)
	prog.finish(err == nil)
	if err != nil {
		return fmt.Errorf("the backup broke off after %s: %w; nothing was written, take it again", byteSize(n), err)
	}
	want := resp.Trailer.Get(backupTrailer)
	if want == "" {
		return fmt.Errorf("the coordinator ended the backup after %s without finishing it (see its log); nothing was written, take it again", byteSize(n))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("the backup's %s hash to %s, but the coordinator sent %s; nothing was written, take it again", byteSize(n), got, want)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		if err := fsutil.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		tmp = nil
	}
	if !quiet && path != "-" {
		how, open := "not encrypted", ""
		switch {
		case body["recipients"] != nil:
			// restore refuses to open it without the private key.
			how, open = fmt.Sprintf("encrypted to %s", plural(len(body["recipients"].([]string)), "recipient")), "--identity KEYFILE "
		case body["passphrase"] != nil:
			how = "encrypted with a passphrase"
		}
		_, err = fmt.Fprintf(e.stderr, "backup written to %s (%s, %s); restore it with: outpost-coordinator restore --data-dir DIR %s%s\n", path, byteSize(n), how, open, path)
	}
	return err
}

// progressWriter feeds a progress from a copy.
type progressWriter struct{ p *progress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.add(len(b))
	return len(b), nil
}
