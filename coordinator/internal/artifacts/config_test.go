package artifacts

import (
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.Endpoint, c.AccessKey, c.SecretKey = "minio.example.com:9000", "outpost", "secret-key"
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; empty for valid
	}{
		{"defaults with a server", func(*Config) {}, ""},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "endpoint is empty"},
		{"endpoint with scheme", func(c *Config) { c.Endpoint = "https://minio:9000" }, "has a scheme"},
		{"endpoint with path", func(c *Config) { c.Endpoint = "minio:9000/bucket" }, "has a path"},
		{"no access key", func(c *Config) { c.AccessKey = "" }, "access_key and secret_key"},
		{"no secret key", func(c *Config) { c.SecretKey = "" }, "access_key and secret_key"},
		{"bad bucket", func(c *Config) { c.Bucket = "Outpost_Artifacts" }, "not a valid bucket name"},
		{"no bucket", func(c *Config) { c.Bucket = "" }, "not a valid bucket name"},
		{"zero max size", func(c *Config) { c.MaxSize = 0 }, "max_size 0 is out of range"},
		{"max size beyond S3", func(c *Config) { c.MaxSize = 6 * TiB }, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v; want an error about %q", err, tt.want)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := "endpoint: s3.example.com\naccess_key: ak\nsecret_key: sk\nsecure: true\nregion: eu-central-1\nmax_size: 1073741824\n"
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	want := Config{Endpoint: "s3.example.com", AccessKey: "ak", SecretKey: "sk", Bucket: DefaultBucket, Secure: true, Region: "eu-central-1", MaxSize: GiB}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
}

func TestNew(t *testing.T) {
	t.Run("zero bucket and size take defaults", func(t *testing.T) {
		s, err := New(Config{Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "b"}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if s.Bucket() != DefaultBucket || s.cfg.MaxSize != DefaultMaxSize || s.partSize != defaultPartSize {
			t.Errorf("bucket %q, max size %d, part size %d", s.Bucket(), s.cfg.MaxSize, s.partSize)
		}
	})
	t.Run("part size grows with max size", func(t *testing.T) {
		s, err := New(Config{Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "b", MaxSize: 5 * TiB}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if s.partSize*maxParts < 5*TiB || s.partSize%MiB != 0 {
			t.Errorf("part size %d cannot carry 5 TiB in %d parts", s.partSize, maxParts)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		_, err := New(Config{}, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "file server config: ") {
			t.Fatalf("New = %v; want the config's problems", err)
		}
	})
}
