package relay

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// plainToken is a value written the same way in the YAML file and in a
// variable: nothing YAML reads as a comment, a quote or null.
var plainToken = regexp.MustCompile(`^[0-9A-Za-z_+.:-]+$`)

// checkAccepted fails t unless c, which Validate accepted, keeps the
// promises the rest of the relay relies on.
func checkAccepted(t *testing.T, c Config) {
	t.Helper()
	if c.ParallelRanges < 0 || c.ParallelRanges > 64 || c.CacheMaxBytes < 0 || c.UpstreamBytesPerSec < 0 ||
		c.EgressBytesPerSec < 0 || c.ParallelMinBytes < 0 || c.ShutdownTimeout < 0 {
		t.Fatalf("accepted out-of-range numbers: %+v", c)
	}
	if n := c.LANSendBufferBytes; n != 0 && (n < 64<<10 || n > 64<<20) {
		t.Fatalf("accepted lan_send_buffer_bytes %d", n)
	}
	if c.DataDir == "" {
		t.Fatal("accepted an empty data_dir")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		t.Fatalf("accepted listen %q: %v", c.Listen, err)
	}
	if c.Coordinator != "" {
		if _, _, err := net.SplitHostPort(c.CoordinatorAddr()); err != nil {
			t.Fatalf("coordinator %q gives address %q: %v", c.Coordinator, c.CoordinatorAddr(), err)
		}
	}
	for _, h := range c.TLSHosts.Hosts() {
		if h == "" || strings.ContainsAny(h, ", \t") {
			t.Fatalf("tls_hosts %q gives host %q", c.TLSHosts, h)
		}
	}
	if c.AdvertiseURL != "" {
		want := "https"
		if c.PlainHTTP {
			want = "http"
		}
		if u, err := url.Parse(c.AdvertiseURL); err != nil || u.Scheme != want || u.Host == "" {
			t.Fatalf("advertise_url %q accepted with plain_http %v", c.AdvertiseURL, c.PlainHTTP)
		}
	}
}

// The relay's configuration file answers whatever is in it with an error
// or a configuration that keeps Validate's promises and reads back the
// same once written; a number means the same in the file as in its
// OUTPOST_RELAY_* variable, or one of them refuses it.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("data_dir: /var/lib/r\nlisten: 10.0.0.5:8090\ntls_hosts: [relay.example.org, 10.0.0.5]\n"), "parallel_ranges", "8")
	f.Add([]byte("plain_http: true\nadvertise_url: http://10.0.0.5:8090\ncoordinator: c.example.org\nenroll_token: opt_x\n"), "cache_max_bytes", "1000000")
	f.Add([]byte("tls_hosts: a.example.org, b.example.org\nfile_server:\n  endpoint: 10.0.0.9:9000\n  access_key: k\n  secret_key: s\n"), "lan_send_buffer_bytes", "262144")
	f.Add([]byte("tls_hosts: ['a,b']\n"), "shutdown_timeout", "15s")
	f.Add([]byte("tls_hosts: {a: b}\n"), "egress_bytes_per_sec", "-1")
	f.Add([]byte("coordinator: '[::1'\n"), "parallel_ranges", "0x10")
	f.Add([]byte("advertise_url: https://r/?q#f\n"), "upstream_bytes_per_sec", "1_000")
	f.Add([]byte("listen: ':99999'\n"), "parallel_min_bytes", "+5")
	f.Add([]byte("colour: red\n"), "shutdown_timeout", "10")
	// Found: YAML read a leading zero as octal (8), the variable as 10.
	f.Add([]byte("{}"), "parallel_ranges", "010")
	path := filepath.Join(f.TempDir(), "relay.yaml")
	f.Fuzz(func(t *testing.T, file []byte, key, value string) {
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path, nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "relay config") {
				t.Fatalf("error %q does not say it is the relay's configuration", err)
			}
		} else {
			checkAccepted(t, c)
			b, err := yaml.Marshal(c)
			if err != nil {
				t.Fatalf("encode %+v: %v", c, err)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			again, err := LoadConfig(path, nil)
			if err != nil {
				t.Fatalf("%+v written as %q does not read back: %v", c, b, err)
			}
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("%+v written as %q reads back as %+v", c, b, again)
			}
		}

		// One numeric setting, from the file and from the environment.
		var s *setting
		for i := range settings {
			if settings[i].key == key {
				s = &settings[i]
			}
		}
		if s == nil || !plainToken.MatchString(value) {
			return
		}
		switch s.field(&Config{}).(type) {
		case *int, *int64:
		default:
			return
		}
		if err := os.WriteFile(path, []byte(key+": "+value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fromFile, fileErr := loadConfig(path, nil)
		fromEnv, envErr := loadConfig("", envFrom(map[string]string{s.env(): value}))
		if envErr != nil && !strings.Contains(envErr.Error(), s.env()) {
			t.Fatalf("%s=%s: error %q does not name the variable", s.env(), value, envErr)
		}
		if fileErr == nil && envErr == nil && !reflect.DeepEqual(fromFile, fromEnv) {
			t.Fatalf("%s %q: the file reads %v, the environment %v", key, value,
				reflect.ValueOf(s.field(&fromFile)).Elem(), reflect.ValueOf(s.field(&fromEnv)).Elem())
		}
	})
}
