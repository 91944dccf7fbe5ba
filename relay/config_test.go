package relay

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string // "-" for no file
		env     map[string]string
		want    func(c *Config)
		wantErr string
	}{
		{name: "defaults only", yaml: "-", want: func(c *Config) {}},
		{name: "empty file", yaml: "", want: func(c *Config) {}},
		{
			name: "file overrides defaults",
			yaml: `
listen: 127.0.0.1:9000
data_dir: /srv/relay
log_level: debug
shutdown_timeout: 3s
file_server:
  endpoint: minio.hq:9000
  secure: true
  access_key: relay
  secret_key: s3cret
coordinator: coord.hq
enroll_token: tok
ca_fingerprint: sha256:ab
advertise_url: https://10.0.0.5:8090
gossip_bind: 0.0.0.0:7946
`,
			want: func(c *Config) {
				c.Listen, c.DataDir, c.LogLevel, c.ShutdownTimeout = "127.0.0.1:9000", "/srv/relay", "debug", 3*time.Second
				c.FileServer = FileServerConfig{Endpoint: "minio.hq:9000", Secure: true, Bucket: "outpost-artifacts",
					AccessKey: "relay", SecretKey: "s3cret"}
				c.Coordinator, c.EnrollToken, c.CAFingerprint = "coord.hq", "tok", "sha256:ab"
				c.AdvertiseURL, c.GossipBind = "https://10.0.0.5:8090", "0.0.0.0:7946"
			},
		},
		{
			name: "environment overrides file",
			yaml: "listen: 127.0.0.1:9000\nfile_server:\n  bucket: from-file\n",
			env: map[string]string{
				"OUTPOST_RELAY_LISTEN":                 "127.0.0.1:9100",
				"OUTPOST_RELAY_FILE_SERVER_BUCKET":     "from-env",
				"OUTPOST_RELAY_FILE_SERVER_SECURE":     "true",
				"OUTPOST_RELAY_FILE_SERVER_ENDPOINT":   "s3:443",
				"OUTPOST_RELAY_FILE_SERVER_ACCESS_KEY": "a",
				"OUTPOST_RELAY_FILE_SERVER_SECRET_KEY": "b",
				"OUTPOST_RELAY_SHUTDOWN_TIMEOUT":       "1m",
				"OUTPOST_RELAY_ENROLL_TOKEN":           "t",
				"OUTPOST_RELAY_COORDINATOR":            "[::1]:9",
			},
			want: func(c *Config) {
				c.Listen, c.ShutdownTimeout = "127.0.0.1:9100", time.Minute
				c.FileServer = FileServerConfig{Endpoint: "s3:443", Secure: true, Bucket: "from-env", AccessKey: "a", SecretKey: "b"}
				c.EnrollToken, c.Coordinator = "t", "[::1]:9"
			},
		},
		{name: "unknown key", yaml: "listen: :1\nlisten_addr: :2\n", wantErr: `unknown key "listen_addr"`},
		{name: "unknown nested key", yaml: "file_server:\n  password: x\n", wantErr: `unknown key "password"`},
		{name: "wrong type", yaml: "file_server:\n  secure: maybe\n", wantErr: `line 2: "maybe" is not true or false`},
		{name: "bad bool in env", yaml: "-", env: map[string]string{"OUTPOST_RELAY_FILE_SERVER_SECURE": "yes please"},
			wantErr: "OUTPOST_RELAY_FILE_SERVER_SECURE"},
		{name: "bad duration in env", yaml: "-", env: map[string]string{"OUTPOST_RELAY_SHUTDOWN_TIMEOUT": "soon"},
			wantErr: "OUTPOST_RELAY_SHUTDOWN_TIMEOUT"},
		{name: "invalid result", yaml: "listen: nowhere\n", wantErr: `listen "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "-" {
				path = writeConfig(t, tt.yaml)
			}
			got, err := LoadConfig(path, envFrom(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadConfig = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("LoadConfig =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), nil); err == nil {
		t.Fatal("LoadConfig of a missing file succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr string // "" means valid
	}{
		{"loopback listen", func(c *Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, "listen"},
		{"listen with bad port", func(c *Config) { c.Listen = ":http2" }, "port"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"bad log format", func(c *Config) { c.LogFormat = "xml" }, "log_format"},
		{"negative shutdown", func(c *Config) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout"},
		{"half a file server", func(c *Config) { c.FileServer.Endpoint = "minio:9000" }, "no access key, secret key"},
		{"file server with scheme", func(c *Config) {
			c.FileServer = FileServerConfig{Endpoint: "http://minio:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"}
		}, "without scheme"},
		{"file server without bucket", func(c *Config) {
			c.FileServer = FileServerConfig{Endpoint: "minio:9000", AccessKey: "a", SecretKey: "s"}
		}, "no bucket"},
		{"complete file server", func(c *Config) {
			c.FileServer = FileServerConfig{Endpoint: "minio:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"}
		}, ""},
		{"coordinator host only", func(c *Config) { c.Coordinator = "coord.example" }, ""},
		{"coordinator with port", func(c *Config) { c.Coordinator = "coord.example:9027" }, ""},
		{"coordinator with bad port", func(c *Config) { c.Coordinator = "coord.example:quic" }, "coordinator"},
		{"token without coordinator", func(c *Config) { c.EnrollToken = "t" }, "enroll_token"},
		{"advertise url", func(c *Config) { c.AdvertiseURL = "https://relay.branch:8090" }, ""},
		{"advertise url without scheme", func(c *Config) { c.AdvertiseURL = "10.0.0.5:8090" }, "advertise_url"},
		{"advertise url with query", func(c *Config) { c.AdvertiseURL = "http://10.0.0.5:8090/?x=1" }, "advertise_url"},
		{"gossip bind without port", func(c *Config) { c.GossipBind = "0.0.0.0" }, "gossip_bind"},
		{"every error at once", func(c *Config) { c.Listen, c.DataDir = "", "" }, "data_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestCoordinatorAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"coord":           "coord:8027",
		"coord:9000":      "coord:9000",
		"10.1.2.3":        "10.1.2.3:8027",
		"::1":             "[::1]:8027",
		"[::1]":           "[::1]:8027",
		"[fe80::1]:12345": "[fe80::1]:12345",
	} {
		if got := (Config{Coordinator: in}).CoordinatorAddr(); got != want {
			t.Errorf("CoordinatorAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every YAML key must be settable from the environment, or a deployment
// that configures by environment cannot reach it.
func TestEveryKeyHasASetting(t *testing.T) {
	have := map[string]bool{}
	for _, s := range settings {
		if have[s.key] {
			t.Errorf("setting %s listed twice", s.key)
		}
		have[s.key] = true
		s.set(&Config{}, "1s") // panics on an unsupported type (a bool rejects "1s" without panicking)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
			if f.Type.Kind() == reflect.Struct {
				walk(key+".", f.Type)
				continue
			}
			if !have[key] {
				t.Errorf("yaml key %s has no environment setting", key)
			}
			delete(have, key)
		}
	}
	walk("", reflect.TypeFor[Config]())
	for k := range have {
		t.Errorf("setting %s matches no yaml key", k)
	}
}

func TestFlagsOverrideEverything(t *testing.T) {
	path := writeConfig(t, "listen: 127.0.0.1:9000\ndata_dir: /from/file\nlog_level: warn\n")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", path, "--listen", "127.0.0.1:9200", "--coordinator", "coord"}); err != nil {
		t.Fatal(err)
	}
	got, err := flags.Load(envFrom(map[string]string{
		"OUTPOST_RELAY_LISTEN":   "127.0.0.1:9100",
		"OUTPOST_RELAY_DATA_DIR": "/from/env",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen != "127.0.0.1:9200" || got.DataDir != "/from/env" || got.LogLevel != "warn" || got.Coordinator != "coord" {
		t.Fatalf("got listen %q data_dir %q log_level %q coordinator %q", got.Listen, got.DataDir, got.LogLevel, got.Coordinator)
	}

	for _, args := range [][]string{
		{"--shutdown-timeout", "never"},
		{"--cache-max-bytes", "lots"},
		{"--plain-http=maybe"},
		{"--listen", "nowhere"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		flags := RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			continue
		}
		if _, err := flags.Load(nil); err == nil {
			t.Errorf("flags %q accepted", args)
		}
	}
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	RegisterFlags(fs)
	if fs.Lookup("enroll-token") != nil || fs.Lookup("secret-key") != nil {
		t.Error("secrets must not be flags: they would show in the process list")
	}
}

// Each flag takes what its field holds: a bool flag stands alone (and
// --help shows no value for it), a duration says so.
func TestFlagTypes(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	RegisterFlags(fs)
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		fl := fs.Lookup(s.flag)
		if fl == nil {
			t.Errorf("setting %s: no flag --%s", s.key, s.flag)
			continue
		}
		want := "string"
		switch s.field(&Config{}).(type) {
		case *bool:
			want = ""
		case *int, *int64:
			// Decimal flags name their value in the help (`bytes`, `N`).
			if got, _ := flag.UnquoteUsage(fl); got == "value" || got == "string" || got == "" {
				t.Errorf("--%s shows as taking %q, want a name for its number", s.flag, got)
			}
			continue
		case *time.Duration:
			want = "duration"
		}
		if got, _ := flag.UnquoteUsage(fl); got != want {
			t.Errorf("--%s shows as taking %q, want %q", s.flag, got, want)
		}
	}

	// Numbers on the command line are decimal, as in YAML and OUTPOST_*:
	// the flag package's own integer flags would read 010 as 8.
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--cache-max-bytes", "010", "--parallel-ranges", "08"}); err != nil {
		t.Fatal(err)
	}
	c, err := flags.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheMaxBytes != 10 || c.ParallelRanges != 8 {
		t.Fatalf("cache_max_bytes %d parallel_ranges %d from 010 and 08, want 10 and 8", c.CacheMaxBytes, c.ParallelRanges)
	}
	for _, bad := range []string{"0x10", "1e6", "ten", "99999999999999999999"} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		RegisterFlags(fs)
		if err := fs.Parse([]string{"--cache-max-bytes", bad}); err == nil {
			t.Errorf("--cache-max-bytes %s accepted", bad)
		}
	}

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"bare bool flag", []string{"--plain-http"}, nil, true},
		{"bool flag over the environment", []string{"--plain-http=false"}, map[string]string{"OUTPOST_RELAY_PLAIN_HTTP": "true"}, false},
		{"environment without the flag", nil, map[string]string{"OUTPOST_RELAY_PLAIN_HTTP": "true"}, true},
		{"neither", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			flags := RegisterFlags(fs)
			if err := fs.Parse(append(tt.args, "--shutdown-timeout", "2s")); err != nil {
				t.Fatal(err)
			}
			got, err := flags.Load(envFrom(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got.PlainHTTP != tt.want || got.ShutdownTimeout != 2*time.Second {
				t.Fatalf("plain_http %v shutdown_timeout %v, want %v and 2s", got.PlainHTTP, got.ShutdownTimeout, tt.want)
			}
		})
	}
}

// OUTPOST_RELAY_CONFIG names the file, as OUTPOST_AGENT_CONFIG and
// OUTPOST_COORDINATOR_CONFIG do; --config wins over it.
func TestConfigFileFromEnvironment(t *testing.T) {
	fromEnv := writeConfig(t, "listen: 127.0.0.1:9001\n")
	fromFlag := writeConfig(t, "listen: 127.0.0.1:9002\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"environment", nil, map[string]string{"OUTPOST_RELAY_CONFIG": fromEnv}, "127.0.0.1:9001"},
		{"flag wins", []string{"--config", fromFlag}, map[string]string{"OUTPOST_RELAY_CONFIG": fromEnv}, "127.0.0.1:9002"},
		{"empty flag means no file", []string{"--config="}, map[string]string{"OUTPOST_RELAY_CONFIG": fromEnv}, ":8090"},
		{"neither", nil, nil, ":8090"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			flags := RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := flags.Load(envFrom(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got.Listen != tt.want {
				t.Fatalf("listen %q, want %q", got.Listen, tt.want)
			}
		})
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	if _, err := flags.Load(envFrom(map[string]string{"OUTPOST_RELAY_CONFIG": missing})); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("a missing file named by OUTPOST_RELAY_CONFIG: %v", err)
	}
}

// tls_hosts is a list in YAML, as the coordinator's is, or one
// comma-separated string, as in the environment and on the command line.
func TestTLSHosts(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		args    []string
		want    []string
		wantErr string
	}{
		{name: "yaml list", yaml: "tls_hosts: [relay.branch.example, 10.9.9.9]\n", want: []string{"relay.branch.example", "10.9.9.9"}},
		{name: "yaml block list", yaml: "tls_hosts:\n  - relay.branch.example\n  - \"::1\"\n", want: []string{"relay.branch.example", "::1"}},
		{name: "yaml string", yaml: "tls_hosts: relay.branch.example, 10.9.9.9\n", want: []string{"relay.branch.example", "10.9.9.9"}},
		{name: "empty yaml list", yaml: "tls_hosts: []\n", want: nil},
		{name: "environment over the file", yaml: "tls_hosts: [a.example]\n", env: map[string]string{"OUTPOST_RELAY_TLS_HOSTS": "b.example,c.example"},
			want: []string{"b.example", "c.example"}},
		{name: "flag over the environment", env: map[string]string{"OUTPOST_RELAY_TLS_HOSTS": "b.example"}, args: []string{"--tls-hosts", "d.example, e.example"},
			want: []string{"d.example", "e.example"}},
		{name: "comma inside a list entry", yaml: "tls_hosts: [\"a.example,b.example\"]\n", wantErr: "one host per list entry"},
		{name: "mapping", yaml: "tls_hosts:\n  a: b\n", wantErr: "want a list of hosts or a comma-separated string"},
		{name: "list of lists", yaml: "tls_hosts: [[a]]\n", wantErr: "line 1: a list is not text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			flags := RegisterFlags(fs)
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeConfig(t, tt.yaml)}, args...)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			got, err := flags.Load(envFrom(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if hosts := got.TLSHosts.Hosts(); !reflect.DeepEqual(hosts, tt.want) {
				t.Fatalf("tls_hosts %q, want %q", hosts, tt.want)
			}
			if serving := got.ServingHosts(); !reflect.DeepEqual(serving, tt.want) {
				t.Fatalf("serving hosts %q, want %q", serving, tt.want)
			}
		})
	}
}

// A boolean's value as a separate argument, as --plain-http took it when
// it was a string flag, still works.
func TestJoinBoolValues(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	RegisterFlags(fs)
	for _, c := range []struct{ in, want []string }{
		{[]string{"--plain-http", "true", "--listen", ":80"}, []string{"--plain-http=true", "--listen", ":80"}},
		{[]string{"-plain-http", "false"}, []string{"-plain-http=false"}},
		{[]string{"--plain-http", "--listen", ":80"}, []string{"--plain-http", "--listen", ":80"}},
		{[]string{"--listen", "true"}, []string{"--listen", "true"}}, // not a boolean
		{[]string{"--", "--plain-http", "true"}, []string{"--", "--plain-http", "true"}},
	} {
		if got := JoinBoolValues(fs, c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("JoinBoolValues(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
