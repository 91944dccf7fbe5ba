package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
)

// the operator made the backup key with 'age-keygen -o
// backup-key.txt' and, since the file says "# public key: age1...",
// passes it as --recipients-file. The CLI skips the comment lines and
// sends the line AGE-SECRET-KEY-1... to the coordinator as a recipient:
// the private key the help promises "stays off the coordinator" crosses
// the network inside the request, and the coordinator's 400 answer quotes
// it back (truncated at 80 characters: a whole key is 74) onto the
// operator's terminal or CI log. (The review found it so; fixed.) Now: the CLI recognises an identity
// (AGE-SECRET-KEY-) in a recipients file or --recipient, sends nothing, and
// says to give the public key (age-keygen -y) without quoting the secret.
func TestBackupRecipientsFileWithPrivateKeyIsNotSent(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	secret := id.String()
	var mu sync.Mutex
	var sent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent += string(b)
		mu.Unlock()
		// What the coordinator answers (api.takeBackup).
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"recipient \"`+secret+`\" is not an age public key (age1..., as age-keygen prints it)"}`)
	}))
	defer srv.Close()
	keyFile := writeFile(t, t.TempDir(), "backup-key.txt", []byte("# created: 2026-11-28T04:00:00Z\n# public key: "+id.Recipient().String()+"\n"+secret+"\n"))
	res := runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": srv.URL}}, "backup", "--recipients-file", keyFile, t.TempDir()+"/b")
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(sent, "AGE-SECRET-KEY-") {
		t.Errorf("the CLI sent the backup's private key to the coordinator: %s", sent)
	}
	if strings.Contains(res.stderr, secret) {
		t.Errorf("the private key is printed: %s", res.stderr)
	}
}
