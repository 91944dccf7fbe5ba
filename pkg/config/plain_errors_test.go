package config

import (
	"strings"
	"testing"
	"time"
)

// A mistake in a configuration file is told in the file's words: the key
// with the nearest known one, the value and what is wanted; never a Go
// type's name.
func TestDecodeErrorsSpeakTheFilesWords(t *testing.T) {
	type store struct {
		Path string `yaml:"path"`
	}
	type cfg struct {
		Root     string        `yaml:"root"`
		DataDir  string        `yaml:"data_dir"`
		Interval time.Duration `yaml:"interval"`
		Retries  int           `yaml:"retries"`
		Debug    bool          `yaml:"debug"`
		Store    store         `yaml:"store"`
	}
	for in, want := range map[string]string{
		"roots: /\n":             `line 1: unknown key "roots" (did you mean "root"?)`,
		"data-dir: /x\n":         `line 1: unknown key "data-dir" (did you mean "data_dir"?)`,
		"store:\n  pth: /x\n":    `line 2: unknown key "pth" (did you mean "path"?)`,
		"colour: red\n":          `line 1: unknown key "colour"`,
		"interval: soon\n":       `line 1: "soon" is not a duration: write one such as 30s, 5m or 2h`,
		"retries: many\n":        `line 1: "many" is not a whole number`,
		"debug: perhaps\n":       `line 1: "perhaps" is not true or false`,
		"roots: /\nretries: x\n": `line 1: unknown key "roots" (did you mean "root"?); line 2: "x" is not a whole number`,
	} {
		var c cfg
		err := Decode([]byte(in), &c)
		if err == nil || err.Error() != want {
			t.Errorf("%q: %v\n want %s", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "type ")) {
			t.Errorf("%q: a Go type in %v", in, err)
		}
	}
}
