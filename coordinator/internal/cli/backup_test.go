package cli

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/coordinator/internal/backup"
)

// Against a real coordinator: outpost backup writes the file whole, mode
// 0600, encrypted to the keys given or with the passphrase, and it opens
// into the coordinator's data directory.
func TestBackupAgainstARealCoordinator(t *testing.T) {
	h := coordinatortest.New(t)
	h.CreateOffice("berlin", nil)
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	keys := writeFile(t, dir, "recipients.txt", []byte("# the backup key\n"+id.Recipient().String()+"\n"))
	env := map[string]string{"OUTPOST_SERVER": h.URL, "OUTPOST_TOKEN": h.Token, "OUTPOST_BACKUP_PASSPHRASE": "correct horse battery staple"}
	outpost := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, nil, cliRun{env: env}, args...)
	}
	for name, tc := range map[string]struct {
		args []string
		open age.Identity
	}{
		"to a key file":     {args: []string{"--recipients-file", keys}, open: id},
		"to a key":          {args: []string{"--recipient", id.Recipient().String()}, open: id},
		"with a passphrase": {args: []string{"--passphrase"}},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".backup")
			res := outpost(append(append([]string{"backup"}, tc.args...), out)...)
			if res.code != 0 || !strings.Contains(res.stderr, "backup written to "+out) {
				t.Fatalf("backup: %+v", res)
			}
			info, err := os.Stat(out)
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("backup file: %v %v", info, err)
			}
			if tmp, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(tmp) > 0 {
				t.Fatalf("temporary files left: %v", tmp)
			}
			b, _ := os.ReadFile(out)
			open := tc.open
			if open == nil {
				open, _ = age.NewScryptIdentity(env["OUTPOST_BACKUP_PASSPHRASE"])
			}
			m, err := backup.Extract(bytes.NewReader(b), filepath.Join(t.TempDir(), "data"), open)
			if err != nil {
				t.Fatal(err)
			}
			paths := map[string]bool{}
			for _, f := range m.Files {
				paths[f.Path] = true
			}
			for _, p := range []string{"outpost.db", "ca/ca.key", "ca/policy.key", "admin.token"} {
				if !paths[p] {
					t.Errorf("the backup lacks %s: %v", p, m.Files)
				}
			}
		})
	}
	if res := outpost("backup", filepath.Join(dir, "x")); res.code != 2 || !strings.Contains(res.stderr, "say how to protect the backup") {
		t.Errorf("backup without a protection: %+v", res)
	}
	if res := outpost("backup", "--plain", "--passphrase", filepath.Join(dir, "x")); res.code != 2 {
		t.Errorf("backup with two protections: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Error("a refused backup wrote its file")
	}
}

// A backup the coordinator did not finish (no trailer) or that changed on
// the way is not written.
func TestBackupThatBreaksOffIsNotWritten(t *testing.T) {
	for name, trailer := range map[string]string{"no trailer": "", "another hash": strings.Repeat("0", 64)} {
		t.Run(name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.mux = http.NewServeMux()
			f.mux.HandleFunc("POST /v1/backup", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", backupTrailer)
				w.Write([]byte("some backup bytes"))
				if trailer != "" {
					w.Header().Set(backupTrailer, trailer)
				}
			})
			out := filepath.Join(t.TempDir(), "outpost.backup")
			res := run(t, f, "backup", "--plain", out)
			if res.code != 1 || !strings.Contains(res.stderr, "nothing was written, take it again") {
				t.Fatalf("backup: %+v", res)
			}
			if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
				t.Fatalf("left %v", entries)
			}
		})
	}
}
