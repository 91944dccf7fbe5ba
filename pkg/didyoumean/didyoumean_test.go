package didyoumean

import "testing"

func TestClosest(t *testing.T) {
	valid := []string{"root", "data_dir", "plugins_dir", "coordinator"}
	for got, want := range map[string]string{"roots": "root", "data-dir": "data_dir", "coordiantor": "coordinator", "ROOT": "root", "quux": "", "": ""} {
		w, ok := Closest(got, valid)
		if w != want || ok != (want != "") {
			t.Errorf("Closest(%q) = %q, %v; want %q", got, w, ok, want)
		}
	}
	if h := Hint("ofice", []string{"office", "agent"}); h != ` (did you mean "office"?)` {
		t.Errorf("Hint = %q", h)
	}
	if d := Distance(string(make([]byte, 65)), "a"); d != 64 {
		t.Errorf("Distance of a long word = %d", d)
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"version", "version", 0},
		{"verison", "version", 1}, // transposition
		{"versio", "version", 1},
		{"artefact", "artifact", 1},
		{"", "kind", 4},
		{"nmae", "name", 1},
		{"colour", "version", 7},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			if got := Distance(tt.a, tt.b); got != tt.want {
				t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
