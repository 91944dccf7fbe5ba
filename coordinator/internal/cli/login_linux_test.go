//go:build linux

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/outposthq/outpost/pkg/testutil"
)

// At a terminal, outpost login asks for the password and the terminal does
// not show it: whatever the terminal echoes comes back on its other side.
func TestLoginPasswordIsNotEchoed(t *testing.T) {
	const password = "s3cret-typed-pw"
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Password string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		got <- in.Password
		writeAnswer(w, 200, `{"access_token":"opu_x","refresh_token":"r","expires":"2025-06-01T13:00:00Z","user":"tina"}`)
	}))
	t.Cleanup(srv.Close)

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	echoed := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO once tty is closed
		echoed <- b
	}()

	env := map[string]string{"OUTPOST_SERVER": srv.URL, "OUTPOST_CONFIG_DIR": t.TempDir()}
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- newApp(tty, &stdout, &stderr, func(k string) string { return env[k] }).run(ctx, []string{"login", "tina"})
	}()

	// Type only once the terminal has stopped echoing, as a person
	// would after the prompt; the old prompt never stopped it.
	testutil.Eventually(t, 5*time.Second, func() bool {
		st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		return err == nil && st.Lflag&unix.ECHO == 0
	}, "outpost login did not turn the terminal's echo off for the password")
	if _, err := ptmx.Write([]byte(password + "\n")); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("outpost login did not finish")
	}
	tty.Close()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if p := <-got; p != password {
		t.Errorf("the coordinator got password %q, want %q", p, password)
	}
	if b := <-echoed; bytes.Contains(b, []byte(password)) {
		t.Errorf("the terminal showed the password: %q", b)
	}
	if s := stderr.String(); !strings.HasPrefix(s, "Password: ") || strings.Contains(s, "shown as you type") {
		t.Errorf("prompt %q, want one that starts Password: and hides what is typed", s)
	}
}
