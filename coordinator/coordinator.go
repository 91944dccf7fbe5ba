// Package coordinator is the thin centre of Outpost: it wires the store,
// the CA, the admin HTTP API and the QUIC endpoint for members, and runs
// them until its context ends. The parts live in coordinator/internal.
package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/api"
	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/console"
	"github.com/outposthq/outpost/coordinator/internal/quicsrv"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Version is set at build time.
var Version = "dev"

// Config is the coordinator's configuration.
type Config struct {
	DataDir string `yaml:"data_dir"`
	// HTTPAddr serves the admin API in plain HTTP; the default binds
	// loopback only, for the machine's own admin tools. Empty: off.
	HTTPAddr string `yaml:"http_addr"`
	// HTTPSAddr serves the same over HTTPS (empty: off), with
	// TLSCertFile/TLSKeyFile when the admin brings a certificate, else with
	// the coordinator's own, issued by its CA for its hostname, the host of
	// public_address, loopback and TLSHosts.
	HTTPSAddr   string           `yaml:"https_addr"`
	TLSCertFile string           `yaml:"tls_cert_file"`
	TLSKeyFile  string           `yaml:"tls_key_file"`
	TLSHosts    []string         `yaml:"tls_hosts"`
	QUICAddr    string           `yaml:"quic_addr"`
	LogLevel    string           `yaml:"log_level"`
	LogFormat   string           `yaml:"log_format"`
	FileServer  artifacts.Config `yaml:"file_server"`
	// PresignTTL bounds the life of a direct-mode download URL.
	PresignTTL time.Duration `yaml:"presign_ttl"`
	// PasswordKDF are the Argon2id parameters of new password hashes.
	PasswordKDF auth.KDF `yaml:"password_kdf"`
	// AccessTokenTTL is the life of a technician's signed access token.
	AccessTokenTTL time.Duration `yaml:"access_token_ttl"`
	// PublicAddress is the host:port agents reach the QUIC endpoint at from
	// their networks — behind NAT or port forwarding it is not the bound
	// address. Installers carry it. Default: the QUIC listen address, with
	// this machine's hostname when that address names no host.
	PublicAddress string `yaml:"public_address"`
	// PushFanout is how many agents of an office the coordinator tells of
	// a new revision; the rest learn it by gossip. 0 tells every agent.
	PushFanout int `yaml:"push_fanout"`
	// GossipKeyPhase is how long each phase of an office's gossip key
	// rotation lasts; 0 means three of the office's check-in intervals.
	GossipKeyPhase time.Duration `yaml:"gossip_key_phase"`
	// DirectCheckins turns the office roll-up off: every agent checks in
	// itself rather than through one member of its office.
	DirectCheckins bool `yaml:"direct_checkins"`
	// Backups are taken on a schedule when Backups.Dir is set.
	Backups BackupConfig `yaml:"backups"`
	// CARenewBefore is how long before its end the CA's certificate is
	// renewed (with the same key); 0 means three years.
	CARenewBefore time.Duration `yaml:"ca_renew_before"`
	// AuditKeep is how long audit events are kept from when they reached
	// the coordinator; 0 means a year (DefaultAuditKeep).
	AuditKeep time.Duration `yaml:"audit_keep"`
}

// DefaultConfig is the configuration without a file.
func DefaultConfig() Config {
	return Config{
		DataDir:    "/var/lib/outpost-coordinator",
		HTTPAddr:   "127.0.0.1:8020",
		HTTPSAddr:  ":8363",
		QUICAddr:   ":8027",
		LogLevel:   "info",
		LogFormat:  "text",
		FileServer: artifacts.DefaultConfig(),
		PresignTTL: 15 * time.Minute,
		PushFanout: 3,
	}
}

// LoadConfig applies defaults, the YAML file at path (if any), then
// OUTPOST_COORDINATOR_* environment variables.
func LoadConfig(path string, env func(string) string) (Config, error) {
	cfg := DefaultConfig()
	err := config.Load(path, &cfg, "OUTPOST_COORDINATOR", env)
	return cfg, err
}

// Validate says what is wrong with a configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	for name, addr := range map[string]string{"http_addr": c.HTTPAddr, "https_addr": c.HTTPSAddr, "quic_addr": c.QUICAddr} {
		if addr == "" && name != "quic_addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	if c.HTTPAddr == "" && c.HTTPSAddr == "" {
		errs = append(errs, errors.New("http_addr and https_addr are both empty: the admin API needs one of them"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls_cert_file and tls_key_file: give both (your own certificate) or neither (one from the coordinator's CA)"))
	}
	if c.PublicAddress != "" {
		host, port, err := net.SplitHostPort(c.PublicAddress)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			errs = append(errs, fmt.Errorf("public_address %q: want host:port where agents reach the QUIC port, like coordinator.example.org:8027", c.PublicAddress))
		}
	}
	if c.CARenewBefore < 0 || c.CARenewBefore > ca.MaxRenewBefore {
		errs = append(errs, fmt.Errorf("ca_renew_before %v: want 0 (three years) up to %v: the CA's certificate is made for ten years",
			c.CARenewBefore, ca.MaxRenewBefore))
	}
	if err := c.PasswordKDF.WithDefaults().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("password_kdf: %w", err))
	}
	// Technicians sign in again when it ends; a sign-in lasts 12 hours.
	if c.AccessTokenTTL < 0 || c.AccessTokenTTL > 12*time.Hour {
		errs = append(errs, fmt.Errorf("access_token_ttl %v: want 0 (the default, 10m) up to 12h", c.AccessTokenTTL))
	}
	if c.AuditKeep != 0 && c.AuditKeep < 24*time.Hour {
		errs = append(errs, fmt.Errorf("audit_keep %v: want 0 (a year) or 24h or more: events are pruned by the day they arrived", c.AuditKeep))
	}
	if c.GossipKeyPhase < 0 {
		errs = append(errs, fmt.Errorf("gossip_key_phase %v: want 0 (three check-in intervals) or more", c.GossipKeyPhase))
	}
	if c.PushFanout < 0 {
		errs = append(errs, fmt.Errorf("push_fanout %d: want 0 (every agent) or more", c.PushFanout))
	}
	if c.PresignTTL < time.Minute || c.PresignTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("presign_ttl %v: want between 1m and 168h", c.PresignTTL))
	}
	if c.FileServer.Endpoint != "" {
		if err := c.FileServer.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("file_server: %w", err))
		}
	}
	if err := c.Backups.validate(c.DataDir, c.FileServer.Endpoint != ""); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Coordinator is a configured coordinator.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	ready chan struct{}

	// Set by Run before ready is closed; read after it.
	httpAddr  net.Addr
	httpsAddr net.Addr
	quic      *quicsrv.Server
	ca        *ca.CA
	token     string
	files     *artifacts.Store // nil without a file server
}

// New checks cfg; Run starts everything.
func New(cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator config: %w", err)
	}
	return &Coordinator{cfg: cfg, log: logger.With("component", "coordinator"), reg: reg, ready: make(chan struct{})}, nil
}

// Ready is closed once both listeners are up.
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

// HTTPAddr is the bound plain-HTTP admin address, once Ready; "" when off.
func (c *Coordinator) HTTPAddr() string { return addrString(c.httpAddr) }

// HTTPSAddr is the bound HTTPS admin address, once Ready; "" when off.
func (c *Coordinator) HTTPSAddr() string { return addrString(c.httpsAddr) }

// CACertDER is the CA certificate, once Ready: what HTTPS clients and
// relays' agents trust.
func (c *Coordinator) CACertDER() []byte { return c.ca.CertDER() }

// QUICAddr is the bound QUIC address, once Ready.
func (c *Coordinator) QUICAddr() string { return c.quic.Addr().String() }

// CAFingerprint is what installers pin, once Ready.
func (c *Coordinator) CAFingerprint() string { return c.ca.Fingerprint() }

// AdminToken is the admin bearer token, once Ready.
func (c *Coordinator) AdminToken() string { return c.token }

type signer struct{ key ed25519.PrivateKey }

func (s signer) Sign(p *wire.Policy) ([]byte, error) {
	sp, err := wire.SignPolicy(s.key, p)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(sp)
}

// adminToken reads the admin token, creating it on first start.
func adminToken(dir string) (string, error) {
	path := filepath.Join(dir, "admin.token")
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 32 {
			return "", fmt.Errorf("admin token in %s is too short; delete the file to make a new one", path)
		}
		return t, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := "opa_" + hex.EncodeToString(raw[:])
	if err := fsutil.WriteFileAtomic(path, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

// checkPrivate refuses a data directory that users other than its owner
// can write: MkdirAll leaves one that exists as it is, and whoever can
// write it can put a token or keys of their own in place of the
// coordinator's.
func checkPrivate(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // no Unix modes; the directory's ACL decides
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("data directory %s can be written by other users (mode %04o), who could replace its keys and admin token: chmod 700 %s", dir, perm, dir)
	}
	return nil
}

// Run serves until ctx ends.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := checkPrivate(c.cfg.DataDir); err != nil {
		return err
	}
	if n := fsutil.RemoveOld(c.cfg.DataDir, func(name string) bool {
		return strings.HasPrefix(name, ".backup-store-") && strings.HasSuffix(name, ".tmp")
	}, staleAfter); n > 0 {
		c.log.Info("removed the store copies of backups cut short by a stop", "files", n)
	}
	st, err := store.Open(filepath.Join(c.cfg.DataDir, "outpost.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	authority, err := ca.LoadOrCreate(filepath.Join(c.cfg.DataDir, "ca"), c.serverHosts(), c.cfg.CARenewBefore, c.log)
	if err != nil {
		return err
	}
	c.ca = authority
	if err := fsutil.WriteFileAtomic(filepath.Join(c.cfg.DataDir, "ca.fingerprint"), []byte(authority.Fingerprint()+"\n"), 0o644); err != nil {
		return err
	}
	if c.token, err = adminToken(c.cfg.DataDir); err != nil {
		return err
	}

	var files *artifacts.Store
	var presigner quicsrv.Presigner
	var creds quicsrv.CredentialIssuer
	var uploader api.FileServer
	if c.cfg.FileServer.Endpoint != "" {
		files, err = artifacts.New(c.cfg.FileServer, c.log)
		if err != nil {
			return err
		}
		if err := ensureBucket(ctx, files, c.log); err != nil {
			return err
		}
		presigner, creds, uploader = files, files, files
		c.files = files
	} else {
		c.log.Warn("no file server configured: artifact upload and content delivery are off (set file_server.endpoint)")
	}

	qs, err := quicsrv.New(quicsrv.Config{Addr: c.cfg.QUICAddr, PresignTTL: c.cfg.PresignTTL, Version: Version, PushFanout: c.cfg.PushFanout, KeyPhase: c.cfg.GossipKeyPhase,
		DirectCheckins: c.cfg.DirectCheckins, ResetKeyFile: filepath.Join(c.cfg.DataDir, "quic-reset.key")},
		authority, st, presigner, creds, c.log, c.reg)
	if err != nil {
		return err
	}
	c.quic = qs
	authSrv, err := c.startAuth(st, authority.Fingerprint())
	if err != nil {
		return err
	}
	qs.SetAccess(authSrv)
	_, quicPort, _ := net.SplitHostPort(c.cfg.QUICAddr)
	h, err := api.New(api.Deps{Store: st, Files: uploader, PublicAddress: c.PublicAddress(), Notifier: qs, Presence: qs,
		Signer: signer{authority.PolicyKey()}, Gatherer: c.reg, Logger: c.log, AdminToken: c.token,
		Auth: authSrv, Access: qs, CAFingerprint: authority.Fingerprint(), CA: authority, QUICPort: quicPort, DataDir: c.cfg.DataDir, Version: Version}, c.reg)
	if err != nil {
		return err
	}
	// Set before the QUIC server runs: an agent placed in an office may
	// need a revision of its own there.
	qs.SetPlacementHook(h.MemberPlaced)
	qs.SetRevisionRaise(h.RaiseRevision)
	if err := h.PublishFirstRevisions(); err != nil {
		c.log.Error("publish the first revision of offices with agents and no policy", "err", err)
	}
	if err := c.reg.Register(h.ComplianceCollector()); err != nil {
		return fmt.Errorf("register compliance metrics: %w", err)
	}
	if err := c.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outpost_coordinator_ca_not_after_timestamp_seconds",
		Help: "When the CA's current certificate ends (Unix time); it is renewed, with the same key, three years (ca_renew_before) before.",
	}, func() float64 { return float64(authority.NotAfter().Unix()) })); err != nil {
		return fmt.Errorf("register CA metric: %w", err)
	}
	ui, err := console.New(console.Config{API: h}, c.log)
	if err != nil {
		return err
	}
	servers, err := c.listenAdmin(handler(h, ui), authority)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1+len(servers))
	go func() { errc <- qs.Run(ctx) }()
	for _, as := range servers {
		go func() { errc <- as.serve() }()
	}
	closeAll := func() {
		for _, as := range servers {
			as.srv.Close()
		}
	}
	select {
	case <-qs.Ready():
	case err := <-errc:
		cancel()
		closeAll()
		for range len(servers) {
			<-errc
		}
		return err
	}
	c.log.Info("coordinator ready", "http", addrString(c.httpAddr), "https", addrString(c.httpsAddr), "quic", qs.Addr().String(), "public_address", c.PublicAddress(),
		"ca_fingerprint", authority.Fingerprint(), "data_dir", c.cfg.DataDir, "admin_token_file", filepath.Join(c.cfg.DataDir, "admin.token"), "version", Version)
	close(c.ready)
	// Patch approval rules are evaluated hourly (and on demand through the
	// API); the loop ends with ctx, before Run returns.
	rules := make(chan struct{})
	go func() { defer close(rules); _ = h.RunRules(ctx, time.Hour) }()
	defer func() { <-rules }()
	// Audit events past audit_keep are deleted at start, then hourly.
	retention := make(chan struct{})
	go func() { defer close(retention); runRetention(ctx, st, c.cfg.auditKeep(), c.log) }()
	defer func() { <-retention }()
	// The console ends sessions as they expire, and all of them when ctx
	// ends, each with its sign-in at the API: before the store closes.
	sessions := make(chan struct{})
	go func() { defer close(sessions); _ = ui.Run(ctx) }()
	defer func() { <-sessions }()
	if c.cfg.Backups.Dir != "" {
		backups := make(chan struct{})
		go func() { defer close(backups); c.runBackups(ctx, h) }()
		defer func() { <-backups }()
	}
	// Uploads a crash cut short stay in the file server's multipart area
	// until removed: at start, then every few hours (artifacts.RunCleanup).
	if files != nil {
		cleanup := make(chan struct{})
		go func() {
			defer close(cleanup)
			files.RunCleanup(ctx, artifacts.CleanupInterval, artifacts.AbandonedUploadAge)
		}()
		defer func() { <-cleanup }()
	}

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, as := range servers {
		as.srv.Shutdown(shutdown)
	}
	for range 1 + len(servers) - btoi(first != nil) {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// handler serves the admin API (/v1/, /healthz, /metrics) and the web
// console at /ui/ on one listener; / leads to the console.
func handler(api, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("/ui/", ui)
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))
	return mux
}

// PublicAddress is where agents reach the QUIC endpoint: public_address,
// else the QUIC listen address with this machine's hostname for an
// unspecified host.
func (c *Coordinator) PublicAddress() string {
	if c.cfg.PublicAddress != "" {
		return c.cfg.PublicAddress
	}
	host, port, err := net.SplitHostPort(c.cfg.QUICAddr)
	if err != nil {
		return c.cfg.QUICAddr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ensureBucketAttempt bounds one attempt: minio-go retries a server that
// takes the connection and never answers for many minutes on its own.
const ensureBucketAttempt = 10 * time.Second

// ensureBucket waits for the file server, which may still be starting.
func ensureBucket(ctx context.Context, files *artifacts.Store, log *slog.Logger) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, min(ensureBucketAttempt, max(time.Until(deadline), time.Second)))
		err := files.EnsureBucket(actx)
		cancel()
		if err == nil {
			return nil
		}
		if artifacts.CredentialsRefused(err) {
			return fmt.Errorf("file server: it refuses the coordinator's credentials: check file_server.access_key and file_server.secret_key (%w)", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("file server: %w", err)
		}
		log.Warn("file server not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
