package relay

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/relay/internal/upstream"
)

// DefaultCoordinatorPort is the coordinator's QUIC port, used when the
// coordinator address names only a host.
const DefaultCoordinatorPort = "8027"

// Config is everything a relay is told at start. The file-server fields are
// needed only where the relay reads the file server with fixed credentials;
// the enrollment fields (coordinator, enroll_token, ca_fingerprint,
// advertise_url, gossip_bind) are for joining a coordinator and an office.
type Config struct {
	// Listen is the address of the content server (HTTPS, or plain HTTP
	// with PlainHTTP).
	Listen string `yaml:"listen"`
	// DataDir holds the cache and, later, the relay's identity.
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout is how long downloads in progress may finish after
	// the relay is told to stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// FileServer holds fixed read-only credentials. Unset (no endpoint or
	// keys), the file server must come from the coordinator.
	FileServer FileServerConfig `yaml:"file_server"`

	// Coordinator is host[:port] of the coordinator's QUIC listener.
	Coordinator string `yaml:"coordinator"`
	// EnrollToken is the one-time token the relay enrols with.
	EnrollToken string `yaml:"enroll_token"`
	// CAFingerprint pins the coordinator's CA for enrollment.
	CAFingerprint string `yaml:"ca_fingerprint"`
	// AdvertiseURL is the base URL agents fetch from, e.g.
	// https://10.0.0.5:8090.
	AdvertiseURL string `yaml:"advertise_url"`
	// GossipBind is host:port of the office gossip listener.
	GossipBind string `yaml:"gossip_bind"`

	// Content is served over HTTPS: with TLSCertFile and TLSKeyFile when
	// the admin brings a certificate, else with a serving certificate the
	// coordinator's CA issues for TLSHosts, the host of AdvertiseURL and
	// that of Listen (those the office's relay URLs name). PlainHTTP serves
	// plain HTTP instead, which agents take only from an office that allows
	// it (allow_plain_http).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSHosts are more DNS names or IPs to ask the CA for.
	TLSHosts  HostList `yaml:"tls_hosts"`
	PlainHTTP bool     `yaml:"plain_http"`
	// MembersOnly serves content over HTTPS only to clients showing a
	// member certificate (agents from this version on do). Off only while
	// older agents remain, which show none.
	MembersOnly bool `yaml:"members_only"`

	// CacheMaxBytes caps the cache, the partial fetches it keeps to
	// resume included; the least recently used of those that the office's
	// policy does not name are evicted beyond it, and an artifact larger
	// than what the named ones leave of it is served but not kept. 0: no
	// cap.
	CacheMaxBytes int64 `yaml:"cache_max_bytes"`
	// UpstreamBytesPerSec limits all reads from the file server together
	// (the WAN leg); 0: no limit.
	UpstreamBytesPerSec int64 `yaml:"upstream_bytes_per_sec"`
	// EgressBytesPerSec limits all content sent to agents together; 0: no
	// limit.
	EgressBytesPerSec int64 `yaml:"egress_bytes_per_sec"`
	// ParallelRanges is how many ranges of one large artifact (at least
	// ParallelMinBytes) are read from the file server at once.
	ParallelRanges   int   `yaml:"parallel_ranges"`
	ParallelMinBytes int64 `yaml:"parallel_min_bytes"`
	// LANSendBufferBytes, when not 0, is the socket send buffer of a
	// plain-HTTP client on the local network (a handshake under LANRTT): a
	// fixed buffer this size (the kernel doubles it) instead of the
	// kernel's autotuning. Over HTTPS every client keeps autotuning. Off
	// by default: 256 KiB made warm hits 1.1–1.35× faster on loopback, but
	// between two emulated hosts, where each computer's CPU does its own
	// TCP work, it was slower than autotuning in 16 of 18 measurements,
	// 0.93× by their median (README, Performance).
	LANSendBufferBytes int64 `yaml:"lan_send_buffer_bytes"`
}

// HostList is DNS names or IPs, comma-separated. In the YAML file it may
// also be a list, as the coordinator's tls_hosts is; the environment and
// the flags give the comma-separated form.
type HostList string

// UnmarshalYAML takes a list of hosts or one comma-separated string.
func (h *HostList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*h = HostList(s)
	case yaml.SequenceNode:
		var hosts []string
		if err := n.Decode(&hosts); err != nil {
			return err
		}
		for _, host := range hosts {
			// Joined, a comma would split the entry into two hosts.
			if strings.Contains(host, ",") {
				return fmt.Errorf("line %d: host %q: one host per list entry, without commas", n.Line, host)
			}
		}
		*h = HostList(strings.Join(hosts, ","))
	default:
		return fmt.Errorf("line %d: want a list of hosts or a comma-separated string", n.Line)
	}
	return nil
}

// Hosts are the entries of h, without spaces or empty entries.
func (h HostList) Hosts() []string {
	var out []string
	for _, host := range strings.Split(string(h), ",") {
		if host = strings.TrimSpace(host); host != "" {
			out = append(out, host)
		}
	}
	return out
}

// LANRTT is the round trip under which a client counts as on the local
// network: at 1 ms, a 256 KiB buffer (512 KiB in the kernel) still carries
// 4 Gbit/s, and clients farther away keep the kernel's autotuning, which a
// long fat path needs.
const LANRTT = time.Millisecond

// FileServerConfig is the S3-compatible file server and fixed read-only
// credentials for it.
type FileServerConfig struct {
	Endpoint  string `yaml:"endpoint"` // host:port, no scheme
	Secure    bool   `yaml:"secure"`   // https
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"` // empty: asked from the server
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
}

// Configured reports whether fixed credentials were given at all.
func (f FileServerConfig) Configured() bool {
	return f.Endpoint != "" || f.AccessKey != "" || f.SecretKey != ""
}

func (f FileServerConfig) static() upstream.Static {
	return upstream.Static{Endpoint: f.Endpoint, Secure: f.Secure, Bucket: f.Bucket, Region: f.Region,
		AccessKey: f.AccessKey, SecretKey: f.SecretKey}
}

// DefaultConfig is the configuration before any file, environment or flag.
func DefaultConfig() Config {
	return Config{
		Listen:           ":8090",
		DataDir:          "/var/lib/outpost-relay",
		LogLevel:         "info",
		LogFormat:        "text",
		ShutdownTimeout:  15 * time.Second,
		FileServer:       FileServerConfig{Bucket: "outpost-artifacts"},
		ParallelRanges:   4,
		ParallelMinBytes: 64 << 20,
		MembersOnly:      true,
	}
}

// Validate says what is wrong with c, all at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := checkHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		bad("data_dir: empty; name a directory the relay may write")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if f := strings.ToLower(c.LogFormat); f != "text" && f != "json" {
		bad("log_format %q: want text or json", c.LogFormat)
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout %v: must not be negative", c.ShutdownTimeout)
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"cache_max_bytes", c.CacheMaxBytes}, {"upstream_bytes_per_sec", c.UpstreamBytesPerSec},
		{"egress_bytes_per_sec", c.EgressBytesPerSec}, {"parallel_min_bytes", c.ParallelMinBytes}} {
		if v.n < 0 {
			bad("%s %d: must not be negative (0 means no limit)", v.name, v.n)
		}
	}
	if n := c.LANSendBufferBytes; n != 0 && (n < 64<<10 || n > 64<<20) {
		bad("lan_send_buffer_bytes %d: want 65536 to 67108864 (0: the kernel's autotuning)", n)
	}
	if c.ParallelRanges < 0 || c.ParallelRanges > 64 {
		bad("parallel_ranges %d: want 1 to 64 (0: the default)", c.ParallelRanges)
	}
	if c.FileServer.Configured() {
		if err := c.FileServer.static().Validate(); err != nil {
			bad("file_server: %v", err)
		}
	}
	if c.Coordinator != "" {
		if err := checkHostPort(c.CoordinatorAddr()); err != nil {
			bad("coordinator %q: %v; want host or host:port", c.Coordinator, err)
		}
	}
	if c.EnrollToken != "" && c.Coordinator == "" {
		bad("enroll_token is set but coordinator is not: say which coordinator to enrol with")
	}
	if c.AdvertiseURL != "" {
		u, err := url.Parse(c.AdvertiseURL)
		switch {
		case err != nil:
			bad("advertise_url %q: %v", c.AdvertiseURL, err)
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.RawQuery != "", u.Fragment != "":
			bad("advertise_url %q: want an http(s) base URL such as http://10.0.0.5:8090", c.AdvertiseURL)
		}
	}
	if c.GossipBind != "" {
		if err := checkHostPort(c.GossipBind); err != nil {
			bad("gossip_bind %q: %v", c.GossipBind, err)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("tls_cert_file and tls_key_file: give both (your own certificate) or neither (one from the coordinator's CA)")
	}
	if c.PlainHTTP && c.TLSCertFile != "" {
		bad("plain_http is set with tls_cert_file: serve either plain HTTP or HTTPS")
	}
	if u, err := url.Parse(c.AdvertiseURL); c.AdvertiseURL != "" && err == nil {
		switch {
		case c.PlainHTTP && u.Scheme != "http":
			bad("advertise_url %q: the relay serves plain HTTP (plain_http), so its URL starts with http://", c.AdvertiseURL)
		case !c.PlainHTTP && u.Scheme != "https":
			bad("advertise_url %q: the relay serves HTTPS, so its URL starts with https:// (set plain_http: true for plain HTTP, where the office allows it)", c.AdvertiseURL)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("relay config: %w", errors.Join(errs...))
	}
	return nil
}

// CoordinatorAddr is the coordinator as host:port, with the default port
// when the config names only a host; "" when none is configured.
func (c Config) CoordinatorAddr() string {
	if c.Coordinator == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(c.Coordinator); err == nil {
		return c.Coordinator
	}
	return net.JoinHostPort(strings.Trim(c.Coordinator, "[]"), DefaultCoordinatorPort)
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// EnvPrefix starts the name of every environment variable the relay reads:
// OUTPOST_RELAY_LISTEN, OUTPOST_RELAY_FILE_SERVER_ACCESS_KEY, ...
const EnvPrefix = "OUTPOST_RELAY_"

// setting is one configurable value; key is its YAML path, from which its
// environment variable is named.
type setting struct {
	key   string
	flag  string // "" for values not settable by flag (secrets stay off ps)
	help  string
	field func(*Config) any // *string, *HostList, *bool, *int, *int64 or *time.Duration
}

var settings = []setting{
	{"listen", "listen", "address of the content HTTP server", func(c *Config) any { return &c.Listen }},
	{"data_dir", "data-dir", "directory for the cache and state", func(c *Config) any { return &c.DataDir }},
	{"log_level", "log-level", "debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
	{"log_format", "log-format", "text or json", func(c *Config) any { return &c.LogFormat }},
	{"shutdown_timeout", "shutdown-timeout", "how long downloads may finish at shutdown", func(c *Config) any { return &c.ShutdownTimeout }},
	{"file_server.endpoint", "", "", func(c *Config) any { return &c.FileServer.Endpoint }},
	{"file_server.secure", "", "", func(c *Config) any { return &c.FileServer.Secure }},
	{"file_server.bucket", "", "", func(c *Config) any { return &c.FileServer.Bucket }},
	{"file_server.region", "", "", func(c *Config) any { return &c.FileServer.Region }},
	{"file_server.access_key", "", "", func(c *Config) any { return &c.FileServer.AccessKey }},
	{"file_server.secret_key", "", "", func(c *Config) any { return &c.FileServer.SecretKey }},
	{"coordinator", "coordinator", "coordinator host[:port] (QUIC, default port " + DefaultCoordinatorPort + ")", func(c *Config) any { return &c.Coordinator }},
	{"enroll_token", "", "", func(c *Config) any { return &c.EnrollToken }},
	{"ca_fingerprint", "ca-fingerprint", "pinned fingerprint of the coordinator's CA", func(c *Config) any { return &c.CAFingerprint }},
	{"advertise_url", "advertise-url", "base URL agents fetch from, e.g. https://10.0.0.5:8090", func(c *Config) any { return &c.AdvertiseURL }},
	{"gossip_bind", "gossip-bind", "host:port of the office gossip listener", func(c *Config) any { return &c.GossipBind }},
	{"tls_cert_file", "tls-cert-file", "PEM certificate (chain) to serve HTTPS with, instead of one from the coordinator's CA", func(c *Config) any { return &c.TLSCertFile }},
	{"tls_key_file", "tls-key-file", "PEM key of tls_cert_file", func(c *Config) any { return &c.TLSKeyFile }},
	{"tls_hosts", "tls-hosts", "more DNS names or IPs for the CA-issued serving certificate, comma-separated", func(c *Config) any { return &c.TLSHosts }},
	{"plain_http", "plain-http", "serve plain HTTP (only for offices that allow it)", func(c *Config) any { return &c.PlainHTTP }},
	{"members_only", "members-only", "serve content over HTTPS only to clients with a member certificate; false only while agents older than this relay remain", func(c *Config) any { return &c.MembersOnly }},
	{"cache_max_bytes", "cache-max-bytes", "cap on cached `bytes`, LRU eviction beyond it (0: none)", func(c *Config) any { return &c.CacheMaxBytes }},
	{"upstream_bytes_per_sec", "upstream-bytes-per-sec", "limit on reads from the file server, in `bytes/s` (0: none)", func(c *Config) any { return &c.UpstreamBytesPerSec }},
	{"egress_bytes_per_sec", "egress-bytes-per-sec", "limit on content sent to agents, in `bytes/s` (0: none)", func(c *Config) any { return &c.EgressBytesPerSec }},
	{"parallel_ranges", "parallel-ranges", "how many ranges (`N`) of one large artifact are read from the file server at once", func(c *Config) any { return &c.ParallelRanges }},
	{"parallel_min_bytes", "parallel-min-bytes", "size in `bytes` from which artifacts are read in parallel ranges", func(c *Config) any { return &c.ParallelMinBytes }},
	{"lan_send_buffer_bytes", "lan-send-buffer-bytes", "socket send buffer in `bytes` for plain-HTTP clients under 1 ms away (0: the kernel's autotuning)", func(c *Config) any { return &c.LANSendBufferBytes }},
}

func (s setting) env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(s.key, ".", "_"))
}

func (s setting) set(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *HostList:
		*p = HostList(v)
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q: want true or false", v)
		}
		*p = b
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q: want a whole number", v)
		}
		*p = n
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q: want a whole number", v)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q: want a duration such as 15s", v)
		}
		*p = d
	default:
		panic(fmt.Sprintf("relay: setting %s has an unsupported type %T", s.key, p))
	}
	return nil
}

// LoadConfig returns the defaults, overlaid by the YAML file at path (if
// path is not empty; unknown keys are errors), overlaid by the OUTPOST_RELAY_*
// variables that env returns non-empty, validated.
func LoadConfig(path string, env func(string) string) (Config, error) {
	c, err := loadConfig(path, env)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func loadConfig(path string, env func(string) string) (Config, error) {
	c := DefaultConfig()
	if path != "" {
		data, err := config.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("relay %w", err)
		}
		// As the agent's and the coordinator's: unknown keys and numbers
		// with a leading zero (octal to YAML, decimal to the rest) refused.
		if err := config.Decode(data, &c); err != nil {
			return Config{}, fmt.Errorf("relay config %s: %w", path, err)
		}
	}
	if env != nil {
		for _, s := range settings {
			if v := env(s.env()); v != "" {
				if err := s.set(&c, v); err != nil {
					return Config{}, fmt.Errorf("environment %s: %w", s.env(), err)
				}
			}
		}
	}
	return c, nil
}

// ConfigEnv names the YAML file when --config does not.
const ConfigEnv = EnvPrefix + "CONFIG"

// define makes s a flag of its field's type, so that the usage text says
// what it takes and a bool flag needs no value; the flag writes into
// values, which holds the defaults that --help shows.
func (s setting) define(fs *flag.FlagSet, values *Config) {
	usage := s.help + " (overrides " + s.key + " and " + s.env() + ")"
	switch p := s.field(values).(type) {
	case *string:
		fs.StringVar(p, s.flag, *p, usage)
	case *HostList:
		fs.StringVar((*string)(p), s.flag, string(*p), usage)
	case *bool:
		fs.BoolVar(p, s.flag, *p, usage)
	case *int64:
		config.Int64Var(fs, p, s.flag, *p, usage)
	case *int:
		config.IntVar(fs, p, s.flag, *p, usage)
	case *time.Duration:
		fs.DurationVar(p, s.flag, *p, usage)
	default:
		panic(fmt.Sprintf("relay: setting %s has an unsupported type %T", s.key, p))
	}
}

// JoinBoolValues rewrites "--flag true" (or false) into "--flag=true" for
// the boolean flags of fs. The flag package takes a boolean's value only
// after "=", and until the relay's flags were typed, --plain-http took a
// separate value: command lines written then keep working.
func JoinBoolValues(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name := strings.TrimLeft(a, "-")
		if fl := fs.Lookup(name); fl != nil && strings.HasPrefix(a, "-") && !strings.Contains(a, "=") && i+1 < len(args) {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				if v := args[i+1]; v == "true" || v == "false" {
					out = append(out, a+"="+v)
					i++
					continue
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// Flags are the command line's part of the configuration: --config names
// the YAML file (else OUTPOST_RELAY_CONFIG does), and the other flags
// override it and the environment.
type Flags struct {
	ConfigPath string
	fs         *flag.FlagSet
	// values holds what the flags parsed; only those set on the command
	// line are taken from it.
	values Config
}

// RegisterFlags defines the relay's flags on fs. Secrets (keys, the enroll
// token) have no flag, so that they do not show in the process list.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: DefaultConfig()}
	fs.StringVar(&f.ConfigPath, "config", "", "YAML config file (optional; overrides "+ConfigEnv+")")
	for _, s := range settings {
		if s.flag != "" {
			s.define(fs, &f.values)
		}
	}
	return f
}

// Load is LoadConfig of the file that --config names, else of the one
// that OUTPOST_RELAY_CONFIG does, with the flags that were set on the
// command line applied last.
func (f *Flags) Load(env func(string) string) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	path := env(ConfigEnv)
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["config"] {
		path = f.ConfigPath
	}
	c, err := loadConfig(path, env)
	if err != nil {
		return Config{}, err
	}
	for _, s := range settings {
		if s.flag != "" && set[s.flag] {
			// The flag package parsed the value already, into a field of
			// the same type.
			reflect.ValueOf(s.field(&c)).Elem().Set(reflect.ValueOf(s.field(&f.values)).Elem())
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ServingHosts are the hosts the relay asks the CA to name in its serving
// certificate: tls_hosts, the host of advertise_url, and the host of
// listen when it is a specific address.
func (c Config) ServingHosts() []string {
	out := c.TLSHosts.Hosts()
	if u, err := url.Parse(c.AdvertiseURL); err == nil && u.Hostname() != "" {
		out = append(out, u.Hostname())
	}
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			out = append(out, host)
		}
	}
	return out
}
