package config

import (
	"strings"
	"testing"
	"time"
)

// An admin turns a listener off the way the configuration's comments say
// ("empty: off") and writes "https_addr:" with nothing after it. YAML
// reads that as null, and a null left the default in place without a
// word: the coordinator went on serving its admin API on :8363 to the
// network while its file said it was off. A single-valued setting with
// no value is refused, with its line; a list or a section without one
// still means none or the defaults.
func TestASettingWithoutAValueIsRefusedNotLeftAtItsDefault(t *testing.T) {
	for _, in := range []string{"data_dir:\n", "data_dir: ~\n", "interval: null\n", "memory:\n", "file_server:\n  secure:\n", "file_server:\n  endpoint:\n"} {
		c := cfg{DataDir: "/default", Interval: time.Minute, Memory: 7, Files: sub{Secure: true}}
		err := Decode([]byte(in), &c)
		if err == nil || !strings.Contains(err.Error(), "line ") || !strings.Contains(err.Error(), `""`) {
			t.Errorf("%q: %v, want it refused with its line, saying to write \"\" for none (read as %+v)", in, err, c)
		}
	}
	for _, in := range []string{"seeds:\n", "file_server:\n", "data_dir: \"\"\n"} {
		c := cfg{DataDir: "/default", Seeds: []string{"a"}}
		if err := Decode([]byte(in), &c); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}
