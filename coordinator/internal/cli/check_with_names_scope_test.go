package cli

import (
	"net"
	"net/http"
	"testing"
)

// When the answer to a change is lost, the command it says to check with
// runs as printed: perm show and token list need the office or host the
// change was for.
func TestCheckWithNamesTheScope(t *testing.T) {
	reset := func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/offices/berlin/permissions", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 200, `{"grants":[]}`)
	})
	mux.HandleFunc("GET /v1/hosts/pc-7/permissions", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 200, `{"grants":[]}`)
	})
	mux.HandleFunc("PUT /v1/offices/berlin/permissions", reset)
	mux.HandleFunc("PUT /v1/hosts/pc-7/permissions", reset)
	f := newRoutedAPI(t, mux)

	for _, tt := range []struct {
		args  []string
		check string
	}{
		{[]string{"perm", "set", "--office", "berlin", "group:berlin-techs=view"}, "outpost perm show --office berlin"},
		{[]string{"perm", "set", "--host", "pc-7", "deny:user:tom=command"}, "outpost perm show --host pc-7"},
	} {
		res := run(t, f, tt.args...)
		want{code: 1, stderrHas: []string{": it may or may not have taken effect; check with " + tt.check + " and try again\n"}}.check(t, res)
	}
}
