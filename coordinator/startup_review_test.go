package coordinator_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// startConfig is a coordinator's configuration on loopback ports the
// system picks, with its data in dir.
func startConfig(dir string) coordinator.Config {
	cfg := coordinator.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = ""
	cfg.QUICAddr = "127.0.0.1:0"
	return cfg
}

// startRun runs a coordinator until the test ends; the channel
// receives what Run returned.
func startRun(t *testing.T, cfg coordinator.Config, log *slog.Logger) (*coordinator.Coordinator, <-chan error) {
	t.Helper()
	c, err := coordinator.New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() { done <- c.Run(ctx); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Error("the coordinator did not stop")
		}
	})
	return c, done
}

// The operator made the data directory by hand (mkdir, or a
// configuration management tool with mode 0777, or the default 0775 of a
// group-shared folder). Run's MkdirAll(0700) does nothing to a directory
// that exists, and the coordinator ran in it: any local user could
// replace admin.token with a token of their own, or ca/ca.key and
// policy.key with keys of their own before the next start, and so become
// admin or sign policy for every computer. A data directory others can
// write is refused, saying what to do.
func TestDataDirWritableByOthersIsRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	c, done := startRun(t, startConfig(dir), logging.Discard())
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "chmod 700") {
			t.Fatalf("Run: %v, want a refusal that says chmod 700", err)
		}
	case <-c.Ready():
		t.Fatal("the coordinator started in a data directory every user can write")
	case <-time.After(30 * time.Second):
		t.Fatal("the coordinator neither started nor refused")
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err == nil {
		t.Error("the admin token was written into a data directory every user can write")
	}
}

// syncBuffer is a bytes.Buffer a logger and a test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The file server's address is a host that takes the connection and never
// answers (a load balancer without a backend, a hung MinIO, a firewall
// that lets the handshake through). ensureBucket's 30-second deadline was
// checked only between attempts, and an attempt was minio-go's, with its
// own ten retries of a minute each: the coordinator sat for many minutes
// with nothing in its log and no listener up. Each attempt is bounded, so
// it says why it waits within seconds, and gives up at its deadline.
func TestStartWithAFileServerThatNeverAnswersSaysWhySoon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	cfg := startConfig(t.TempDir())
	cfg.FileServer.Endpoint = ln.Addr().String()
	cfg.FileServer.AccessKey, cfg.FileServer.SecretKey = "outpost", "outpost-secret"
	var logs syncBuffer
	_, done := startRun(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	var returned bool
	testutil.Eventually(t, 25*time.Second, func() bool {
		select {
		case <-done:
			returned = true
		default:
		}
		return returned || strings.Contains(logs.String(), "file server not ready")
	}, "25s after start, the coordinator waits for a file server that never answers and its log says nothing: %q", logs.String())
}

// A stray file named like a backup in backups.dir (an operator's copy,
// outpost-backup-before-upgrade.tar.gz) sorted after the coordinator's
// own, whose names are times: pruning kept it as the newest and deleted
// the backup just written (with keep: 1, every one of them), while the
// log and the metric said each was written.
func TestStrayFileNamedLikeABackupDoesNotGetNewBackupsPruned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, "outpost-backup-before-upgrade.tar.gz")
	if err := os.WriteFile(stray, []byte("the operator's"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Keep: 1, Plain: true}
	}))
	testutil.Eventually(t, 20*time.Second, func() bool {
		return c.Metric("outpost_coordinator_backups_total") >= 1
	}, "no scheduled backup taken")
	files, _ := filepath.Glob(filepath.Join(dir, "outpost-backup-2*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("the scheduled backup just written is gone (backups.dir holds %v)", dirNames(dir))
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("the operator's own file was removed: %v", err)
	}
}

// A backup written while the clock was far ahead (a bad RTC at boot,
// fixed by NTP later) was taken as the newest: no backup was due until
// that time came (years), and the last-success metric said a backup had
// been taken in the future, so that no alert on its age ever fired.
func TestBackupDatedInTheFutureDoesNotStopScheduledBackups(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	future := "outpost-backup-20990101T000000Z.tar.gz"
	if err := os.WriteFile(filepath.Join(dir, future), []byte("made with a wrong clock"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Plain: true}
	}))
	testutil.Eventually(t, 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "outpost-backup-20[0-8]*.tar.gz"))
		return len(files) == 1
	}, "no backup taken at start while the only one is dated 2099: %v", dirNames(dir))
	if last := c.Metric("outpost_coordinator_backup_last_success_timestamp_seconds"); last > float64(time.Now().Add(time.Hour).Unix()) {
		t.Errorf("the last-success metric is in the future: %v", time.Unix(int64(last), 0))
	}
}

func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// gossip_key_phase: -1m (or any negative) passed Validate; each phase of
// an office's gossip key rotation then ended at the first check-in after
// it began, so the old key was dropped before members had the new one,
// and the office's gossip split in two.
func TestNegativeGossipKeyPhaseIsRefused(t *testing.T) {
	cfg := coordinator.DefaultConfig()
	cfg.GossipKeyPhase = -time.Minute
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "gossip_key_phase") {
		t.Fatalf("Validate: %v, want gossip_key_phase refused", err)
	}
}

// An operator pasted the private key (AGE-SECRET-KEY-1...) into
// backups.recipients. Validate refused it, quoting it: the key that opens
// every backup went to the terminal, the journal and whatever collects
// the coordinator's log. The API refuses the same mistake without
// quoting it; so does the configuration now.
func TestBackupRecipientThatIsAPrivateKeyIsNotQuoted(t *testing.T) {
	const secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
	cfg := coordinator.DefaultConfig()
	cfg.Backups = coordinator.BackupConfig{Dir: "/x", Recipients: []string{secret}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("a private key taken as a recipient")
	}
	if strings.Contains(strings.ToUpper(err.Error()), "QQQQQQQQ") {
		t.Fatalf("the error quotes the private key: %v", err)
	}
}

// public_address is what every installer carries and every agent dials.
// A port out of range or not a number (a typo: :80270, :8027x) passed
// Validate, and the coordinator built installers whose agents could
// never reach it, while it ran without a word.
func TestPublicAddressWithAnImpossiblePortIsRefused(t *testing.T) {
	for _, addr := range []string{"coordinator.example.org:80270", "coordinator.example.org:8027x", "coordinator.example.org:-1"} {
		cfg := coordinator.DefaultConfig()
		cfg.PublicAddress = addr
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "public_address") {
			t.Errorf("public_address %s: %v, want it refused", addr, err)
		}
	}
	cfg := coordinator.DefaultConfig()
	cfg.PublicAddress = "coordinator.example.org:8027"
	if err := cfg.Validate(); err != nil {
		t.Errorf("a good public_address: %v", err)
	}
}

// The same stray name in the file server's copies (an object an operator
// put under backups/ by hand) sorted after the coordinator's own, was
// kept there as the newest, and each copy just uploaded was deleted
// (with keep: 1, every one).
func TestStrayObjectNamedLikeABackupDoesNotGetCopiesPruned(t *testing.T) {
	m := testutil.StartMinIO(t)
	bucket := coordinator.DefaultConfig().FileServer.Bucket
	m.MakeBucket(t, bucket)
	client := m.Client(t)
	stray := "backups/outpost-backup-before-upgrade.tar.gz"
	if _, err := client.PutObject(t.Context(), bucket, stray, strings.NewReader("mine"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backups")
	coordinatortest.New(t, coordinatortest.WithMinIO(m), coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.Backups = coordinator.BackupConfig{Dir: dir, Keep: 1, Plain: true, FileServer: true}
	}))
	var keys []string
	testutil.Eventually(t, 30*time.Second, func() bool {
		keys = nil
		for obj := range client.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: "backups/outpost-backup-2"}) {
			keys = append(keys, obj.Key)
		}
		return len(keys) == 1
	}, "the bucket holds no copy of the scheduled backup")
	if _, err := client.StatObject(t.Context(), bucket, stray, minio.StatObjectOptions{}); err != nil {
		t.Errorf("the operator's own object was removed: %v", err)
	}
}

// What a backup cut short by a kill leaves is removed at the next start
// once it is old enough not to be one being written: a whole copy of the
// store in the data directory, a half-written backup in backups.dir.
// Nothing removed them, and each was as large as the store.
func TestLeftoversOfBackupsCutShortAreRemoved(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	backups := filepath.Join(t.TempDir(), "backups")
	stale, fresh := time.Now().Add(-7*time.Hour), time.Now()
	files := map[string]time.Time{
		filepath.Join(data, ".backup-store-123.tmp"):                                 stale,
		filepath.Join(data, ".backup-store-456.tmp"):                                 fresh,
		filepath.Join(backups, ".outpost-backup-20261129T040000Z.tar.gz.789.tmp"):    stale,
		filepath.Join(backups, ".outpost-backup-20261129T050000Z.tar.gz.age.12.tmp"): fresh,
		filepath.Join(backups, "notes.tmp"):                                          stale,
	}
	for p, at := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("left by a kill"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	cfg := startConfig(data)
	cfg.Backups = coordinator.BackupConfig{Dir: backups, Plain: true}
	c, _ := startRun(t, cfg, logging.Discard())
	<-c.Ready()
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(backups, ".outpost-backup-20261129T040000Z.tar.gz.789.tmp"))
		return os.IsNotExist(err)
	}, "the stale half-written backup is still there: %v", dirNames(backups))
	for p, at := range files {
		_, err := os.Stat(p)
		if gone := os.IsNotExist(err); gone != (at.Equal(stale) && filepath.Base(p) != "notes.tmp") {
			t.Errorf("%s: gone %v", p, gone)
		}
	}
}

// A negative access_token_ttl silently became the default, and one of
// days outlived the sign-in it came from: both are refused.
func TestAccessTokenTTLIsBounded(t *testing.T) {
	for _, ttl := range []time.Duration{-time.Minute, 13 * time.Hour} {
		cfg := coordinator.DefaultConfig()
		cfg.AccessTokenTTL = ttl
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "access_token_ttl") {
			t.Errorf("access_token_ttl %v: Validate %v", ttl, err)
		}
	}
	cfg := coordinator.DefaultConfig()
	cfg.AccessTokenTTL = time.Hour
	if err := cfg.Validate(); err != nil {
		t.Fatalf("access_token_ttl 1h: %v", err)
	}
}
