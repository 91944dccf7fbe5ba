package cli

import "testing"

// A mistyped flag or help topic is answered with the one it was near, as
// a mistyped command is; a flag nothing is near gets no guess.
func TestFlagTypoHint(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"a command's flag", []string{"office", "add", "x", "--mod", "relay"},
			want{code: 2, stderrHas: []string{"outpost: office add: flag provided but not defined: -mod (did you mean --mode?)\n"}}},
		{"a command's flag with =", []string{"token", "create", "--offce=berlin"},
			want{code: 2, stderrHas: []string{"outpost: token create: flag provided but not defined: -offce (did you mean --office?)\n"}}},
		{"a global flag after the command", []string{"office", "list", "--outptu", "json"},
			want{code: 2, stderrHas: []string{"outpost: office list: flag provided but not defined: -outptu (did you mean --output?)\n"}}},
		{"a global flag before the command", []string{"--sever", "http://x", "office", "list"},
			want{code: 2, stderrHas: []string{"outpost: flag provided but not defined: -sever (did you mean --server?)\n"}}},
		{"a global flag between group and command", []string{"office", "--outpt", "json", "list"},
			want{code: 2, stderrHas: []string{"outpost: flag provided but not defined: -outpt (did you mean --output?)\n"}}},
		{"nothing near", []string{"office", "list", "--colour"},
			want{code: 2, stderr: "outpost: office list: flag provided but not defined: -colour\nUsage: outpost office list\nRun 'outpost help office list' for flags and examples.\n"}},
		{"too short to guess", []string{"agent", "list", "-x"},
			want{code: 2, stderrHas: []string{"outpost: agent list: flag provided but not defined: -x\n"}}},
		{"help of a mistyped command", []string{"help", "offce"},
			want{code: 2, stderrHas: []string{`outpost: help: unknown command "offce" (did you mean "office"?); commands:`}}},
		{"help of a group's mistyped command", []string{"help", "office", "ad"},
			want{code: 2, stderrHas: []string{`outpost: help: unknown command "office ad" (did you mean "add"?); office commands:`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.check(t, run(t, nil, tt.args...))
		})
	}
}
