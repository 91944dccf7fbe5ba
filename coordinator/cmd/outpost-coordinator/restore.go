package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/pkg/config"
)

// identityFiles is --identity, given any number of times.
type identityFiles []string

func (f *identityFiles) String() string     { return strings.Join(*f, ",") }
func (f *identityFiles) Set(s string) error { *f = append(*f, s); return nil }

// restore puts a backup made by 'outpost backup' in place as the data
// directory.
func restore(args []string) error {
	fs := flag.NewFlagSet("outpost-coordinator restore", flag.ContinueOnError)
	path := fs.String("config", os.Getenv("OUTPOST_COORDINATOR_CONFIG"), "YAML configuration file whose data_dir is restored (else OUTPOST_COORDINATOR_CONFIG names it)")
	dataDir := fs.String("data-dir", "", "the data directory to restore into")
	var identities identityFiles
	fs.Var(&identities, "identity", "age identity `FILE` (age-keygen's private key) that opens the backup; may be given several times")
	force := fs.Bool("force", false, "move a data directory that holds a coordinator's state aside (DIR.before-restore-TIME) instead of refusing")
	check := fs.Bool("check", false, "only check that the backup restores (in a temporary directory), and say what it holds; the data directory is not touched")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: outpost-coordinator restore [flags] BACKUP

Restores a backup made by 'outpost backup' into the data directory, with the
coordinator stopped. Everything in the backup is checked before anything is
moved. A backup encrypted to age public keys needs --identity; one encrypted
with a passphrase asks for it at the terminal, or reads
OUTPOST_BACKUP_PASSPHRASE.

--check opens the backup as a restore would, in a temporary directory, and
says what it holds: test backups with it, on any machine.

Then start the coordinator on this machine, reachable where members reach the
old one (its public address). Members keep their certificates; those enrolled
after the backup was made must enrol again. Each office's revisions move past
what its members report holding at their first check-in.

`)
		fs.PrintDefaults()
	}
	if help, err := config.ParseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("give the backup file to restore")
	}
	cfg, err := coordinator.LoadConfig(*path, os.Getenv)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	var ids []age.Identity
	for _, p := range identities {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("read the identity: %w", err)
		}
		got, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read the identity %s: %w", p, err)
		}
		ids = append(ids, got...)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("open the backup: %w", err)
	}
	defer f.Close()
	if len(ids) == 0 && isAge(f) {
		pw := os.Getenv("OUTPOST_BACKUP_PASSPHRASE")
		if pw == "" {
			if !term.IsTerminal(int(os.Stdin.Fd())) {
				return errors.New("the backup is encrypted: give --identity, or its passphrase in OUTPOST_BACKUP_PASSPHRASE")
			}
			fmt.Fprint(os.Stderr, "Passphrase of the backup: ")
			b, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			if err != nil {
				return fmt.Errorf("read the passphrase: %w", err)
			}
			pw = string(b)
		}
		id, err := age.NewScryptIdentity(pw)
		if err != nil {
			return err
		}
		// Backups are made at age's default work factor (18, 256 MiB of
		// memory); a file asking for more, up to 4 GiB, is refused.
		id.SetMaxWorkFactor(18)
		ids = append(ids, id)
	}
	if *check {
		c, err := coordinator.CheckBackup(f, ids...)
		if err != nil {
			return err
		}
		m := c.Manifest
		fmt.Printf("the backup restores: made %s by coordinator %s; %d files; %d offices, %d members; CA %s\n",
			m.Created.Format(time.RFC3339), m.Version, len(m.Files), c.Offices, c.Members, m.CAFingerprint)
		return nil
	}
	res, err := coordinator.Restore(f, coordinator.RestoreOptions{DataDir: cfg.DataDir, Identities: ids, Force: *force, Now: time.Now()})
	if err != nil {
		return err
	}
	m := res.Manifest
	fmt.Printf("restored the backup made %s by coordinator %s into %s (%d files; CA %s)\n",
		m.Created.Format(time.RFC3339), m.Version, cfg.DataDir, len(m.Files), m.CAFingerprint)
	if res.MovedAside != "" {
		fmt.Printf("the data directory that was there is kept in %s\n", res.MovedAside)
	}
	fmt.Println("start the coordinator where members reach the old one; members enrolled after the backup was made must enrol again")
	return nil
}

// isAge says whether f starts like an age file (read at an offset: the
// next read still starts at the beginning).
func isAge(f *os.File) bool {
	head := make([]byte, len("age-encryption.org/v1"))
	n, _ := f.ReadAt(head, 0)
	return string(head[:n]) == "age-encryption.org/v1"
}
