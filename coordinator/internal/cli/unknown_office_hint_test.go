package cli

import (
	"net/http"
	"testing"
)

// The API's bare "office NAME: not found" is followed by the office that
// was likely meant, and by where the offices are listed.
func TestUnknownOfficeHint(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/offices", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 200, `{"offices":[`+berlinJSON+`]}`)
	})
	mux.HandleFunc("GET /v1/offices/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 404, `{"error":"office `+r.PathValue("name")+`: not found"}`)
	})
	mux.HandleFunc("GET /v1/agents", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 404, `{"error":"office `+r.URL.Query().Get("office")+`: not found"}`)
	})
	f := newRoutedAPI(t, mux)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"office", "show", "berlinn"}, "outpost: office show: office berlinn: not found (did you mean \"berlin\"?); see outpost office list\n"},
		{[]string{"agent", "list", "--office", "Berlin"}, "outpost: agent list: office Berlin: not found (did you mean \"berlin\"?); see outpost office list\n"},
		{[]string{"office", "show", "tokyo"}, "outpost: office show: office tokyo: not found; see outpost office list\n"},
	}
	for _, tt := range tests {
		want{code: 1, stderr: tt.want}.check(t, run(t, f, tt.args...))
	}
}
