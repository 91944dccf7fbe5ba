package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sub struct {
	Endpoint string `yaml:"endpoint"`
	Secure   bool   `yaml:"secure"`
}

type cfg struct {
	DataDir  string        `yaml:"data_dir"`
	Interval time.Duration `yaml:"interval"`
	Seeds    []string      `yaml:"seeds"`
	Files    sub           `yaml:"file_server"`
	Memory   uint32        `yaml:"memory"`
	Threads  uint8         `yaml:"threads"`
	Count    int8          `yaml:"count"`
}

func TestOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("data_dir: /from/file\ninterval: 30s\nfile_server:\n  endpoint: file:9000\n"), 0o600)
	c := cfg{DataDir: "/default", Interval: time.Minute}
	env := map[string]string{"X_FILE_SERVER_SECURE": "true", "X_SEEDS": "a:1, b:2", "X_DATA_DIR": "/from/env"}
	if err := Load(path, &c, "X", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/from/env" || c.Interval != 30*time.Second || c.Files.Endpoint != "file:9000" || !c.Files.Secure || len(c.Seeds) != 2 || c.Seeds[1] != "b:2" {
		t.Fatalf("got %+v", c)
	}
}

func TestEnvNumbers(t *testing.T) {
	var c cfg
	env := map[string]string{"X_MEMORY": "65536", "X_THREADS": "4", "X_COUNT": "-3"}
	if err := Load("", &c, "X", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Memory != 65536 || c.Threads != 4 || c.Count != -3 {
		t.Fatalf("got %+v", c)
	}
	for k, v := range map[string]string{"X_THREADS": "256", "X_MEMORY": "-1", "X_COUNT": "128"} {
		err := Load("", &c, "X", func(name string) string {
			if name == k {
				return v
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: got %v, want an error naming it", k, v, err)
		}
	}
}

func TestUnknownFieldHasLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("data_dir: /x\ndata_dri: /y\n"), 0o600)
	var c cfg
	err := Load(path, &c, "X", func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v, want an error naming line 2", err)
	}
}

func TestEmptyFileAndBadEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, nil, 0o600)
	c := cfg{Interval: time.Minute}
	if err := Load(path, &c, "X", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	err := Load("", &c, "X", func(k string) string {
		if k == "X_INTERVAL" {
			return "soon"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "X_INTERVAL") {
		t.Fatalf("got %v", err)
	}
}

// Settings after a second "---" would be ignored without a word: such a
// file is refused, naming the line; a trailing "---" alone is not.
func TestASecondYAMLDocumentIsRefused(t *testing.T) {
	type cfg struct {
		Name string `yaml:"name"`
	}
	var c cfg
	err := Decode([]byte("name: a\n---\nname: b\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "second YAML document") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("two documents: %v", err)
	}
	for _, ok := range []string{"name: a\n", "name: a\n---\n", "---\nname: a\n", ""} {
		if err := Decode([]byte(ok), &c); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A file larger than MaxFileSize is refused, and only MaxFileSize and a
// byte of it are read.
func TestAConfigFileLargerThanTheLimitIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, []byte("name: a\n"+strings.Repeat("#", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ReadFile: %v", err)
	}
}
