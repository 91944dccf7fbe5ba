package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// token is a value written the same way in a YAML file and in a variable:
// a plain scalar, nothing YAML would read as a comment, quote or null.
var token = regexp.MustCompile(`^[0-9A-Za-z_+.:-]+$`)

// The configuration file is the admin's, but a part must answer whatever
// is in it with an error, not a panic; what it accepts must survive being
// written back; and a number or duration means the same in the file as in
// an OUTPOST_* variable (which reads decimal only), or one of them refuses it.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("data_dir: /from/file\ninterval: 30s\nseeds: [a:1, b:2]\nfile_server:\n  endpoint: file:9000\n  secure: true\nmemory: 65536\nthreads: 4\ncount: -3\n"), "memory", "65536")
	f.Add([]byte(""), "interval", "1m30s")
	f.Add([]byte("{}"), "count", "-128")
	f.Add([]byte("data_dri: /y\n"), "threads", "256")
	f.Add([]byte("a: &a [*a]\n"), "memory", "0x10")
	f.Add([]byte("seeds: !!binary aGVsbG8=\n"), "memory", "1_000")
	f.Add([]byte("interval: 10\n"), "interval", "10")
	f.Add([]byte("file_server: ~\n---\ndata_dir: x\n"), "count", "+7")
	f.Add([]byte("base: &b {memory: 010}\n"), "memory", "10")
	f.Add([]byte("file_server: &f {endpoint: x}\nseeds: [*f]\n"), "memory", "10")
	// Found: YAML read a leading zero as octal (8), the variable as 10.
	f.Add([]byte("memory: 0010\n"), "memory", "0010")
	f.Fuzz(func(t *testing.T, file []byte, key, value string) {
		var c cfg
		err := Decode(file, &c)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
		} else {
			// Written back and read again, it is the same configuration.
			b, err := yaml.Marshal(c)
			if err != nil {
				t.Fatalf("encode %+v: %v", c, err)
			}
			var again cfg
			if err := Decode(b, &again); err != nil {
				t.Fatalf("%+v written as %q does not read back: %v", c, b, err)
			}
			if len(c.Seeds) == 0 && len(again.Seeds) == 0 {
				c.Seeds, again.Seeds = nil, nil
			}
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("%+v written as %q reads back as %+v", c, b, again)
			}
		}

		// One setting, from the file and from the environment.
		switch key {
		case "memory", "threads", "count", "interval":
		default:
			return
		}
		if !token.MatchString(value) {
			return
		}
		var fromFile, fromEnv cfg
		fileErr := Decode([]byte(key+": "+value+"\n"), &fromFile)
		name := "X_" + strings.ToUpper(key)
		envErr := Load("", &fromEnv, "X", func(k string) string {
			if k == name {
				return value
			}
			return ""
		})
		if envErr != nil && !strings.Contains(envErr.Error(), name) {
			t.Fatalf("%s=%s: error %q does not name the variable", name, value, envErr)
		}
		if fileErr == nil && envErr == nil && !reflect.DeepEqual(fromFile, fromEnv) {
			t.Fatalf("%s %q: the file reads %+v, the environment %+v", key, value, fromFile, fromEnv)
		}
	})
}

// What FuzzDecode found: a leading zero is refused, with the line, where
// YAML would have read octal and the environment decimal.
func TestLeadingZeroRefused(t *testing.T) {
	for _, src := range []string{"memory: 010\n", "data_dir: x\ncount: -010\n", "base: &b\n  memory: 0_10\n<<: *b\n"} {
		var c struct {
			DataDir string `yaml:"data_dir"`
			Memory  uint32 `yaml:"memory"`
			Count   int8   `yaml:"count"`
			Base    struct {
				Memory uint32 `yaml:"memory"`
			} `yaml:"base"`
		}
		err := Decode([]byte(src), &c)
		if err == nil || !strings.Contains(err.Error(), "leading zero") || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: %v, want the leading zero refused with its line", src, err)
		}
	}
	var c cfg
	if err := Decode([]byte("memory: 0\ncount: -0\ndata_dir: \"010\"\nseeds: [010]\n"), &c); err != nil || c.DataDir != "010" || c.Seeds[0] != "010" {
		t.Errorf("a zero, or a leading zero in a string: %v, %+v", err, c)
	}
}
