package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// The command outpost backup prints to restore what it wrote works as
// printed: a backup encrypted to age keys needs the key that opens it
// (--identity), which the coordinator's restore refuses to go without.
func TestBackupRestoreHintNamesWhatOpensIt(t *testing.T) {
	const key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		notWant string
	}{
		{name: "to a key", args: []string{"--recipient", key}, want: "outpost-coordinator restore --data-dir DIR --identity KEYFILE "},
		{name: "with a passphrase", args: []string{"--passphrase"}, env: map[string]string{"OUTPOST_BACKUP_PASSPHRASE": "correct horse"},
			want: "outpost-coordinator restore --data-dir DIR ", notWant: "--identity"},
		{name: "plain", args: []string{"--plain"}, want: "outpost-coordinator restore --data-dir DIR ", notWant: "--identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.mux = http.NewServeMux()
			f.mux.HandleFunc("POST /v1/backup", func(w http.ResponseWriter, r *http.Request) {
				body := []byte("some backup bytes")
				sum := sha256.Sum256(body)
				w.Header().Set("Trailer", backupTrailer)
				w.Write(body)
				w.Header().Set(backupTrailer, hex.EncodeToString(sum[:]))
			})
			out := filepath.Join(t.TempDir(), "outpost.backup")
			res := runCLI(t, f, cliRun{env: tt.env}, append(append([]string{"backup"}, tt.args...), out)...)
			if res.code != 0 || !strings.Contains(res.stderr, tt.want+out) {
				t.Fatalf("backup: want %q in stderr: %+v", tt.want+out, res)
			}
			if tt.notWant != "" && strings.Contains(res.stderr, tt.notWant) {
				t.Fatalf("backup: %q in stderr: %+v", tt.notWant, res)
			}
		})
	}
}
