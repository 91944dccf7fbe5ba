package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/outposthq/outpost/pkg/freeport"
)

// minioMissing is what a test says when the pinned MinIO binary was not built.
const minioMissing = "bin/minio is missing: run `make bin/minio` " +
	"(go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c)"

// How long a MinIO may take to answer its liveness probe. It is ready in
// well under a second on an idle machine; the margin is for -race runs on
// busy CI runners.
const minioStartTimeout = 30 * time.Second

// MinIO is a real MinIO server that a test started on 127.0.0.1 with its data
// in the test's temporary directory. It stops when the test ends.
type MinIO struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string // root user
	SecretKey string // root password
}

// StartMinIO starts bin/minio on a free loopback port and returns once it
// answers /minio/health/live as initialised and mints STS credentials, so
// that S3 and STS calls work at once. Every call starts its own server, so tests in
// one package (or parallel tests) never share buckets. The server is killed
// and reaped when the test ends.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	bin := filepath.Join(RepoRoot(tb), "bin", "minio")
	if _, err := os.Stat(bin); err != nil {
		tb.Fatal(minioMissing)
	}
	m := &MinIO{AccessKey: "outpost-test", SecretKey: "outpost-test-secret"}
	dir := tb.TempDir()

	// The free port is found by listening and closing, so another process can
	// take it before MinIO binds it. A server that exits at once is retried on
	// a new port rather than failing the test.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freeLoopbackPort()
		if err != nil {
			tb.Fatalf("start minio: %v", err)
		}
		m.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		attemptDir := filepath.Join(dir, strconv.Itoa(attempt))
		lastErr = m.start(tb, bin, attemptDir)
		if lastErr == nil {
			return m
		}
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	tb.Fatalf("start minio: %v", lastErr)
	return nil
}

var errExited = errors.New("minio exited before it was ready")

// start runs one MinIO process on m.Endpoint and waits until it is live.
// On success a Cleanup kills and reaps it.
func (m *MinIO) start(tb testing.TB, bin, dir string) error {
	tb.Helper()
	data := filepath.Join(dir, "data")
	// An explicit, empty certs directory keeps a developer's ~/.minio/certs
	// from turning the server into an HTTPS one.
	certs := filepath.Join(dir, "certs")
	for _, d := range []string{data, certs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	logPath := filepath.Join(dir, "minio.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin, "server", "--quiet", "--address", m.Endpoint, "--certs-dir", certs, data)
	cmd.Env = append(envWithoutMinIO(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	url := "http://" + m.Endpoint + "/minio/health/live"
	client := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(minioStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if live(client, url) && m.stsReady(client) {
			tb.Cleanup(stop)
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("%w (%v); its log:\n%s", errExited, err, log)
		case <-deadline.C:
			stop()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("minio on %s not live after %v; its log:\n%s", m.Endpoint, minioStartTimeout, log)
		case <-tick.C:
		}
	}
}

// envWithoutMinIO is the test's environment minus MINIO_* settings, which a
// developer's shell may carry and which would change the server under test.
func envWithoutMinIO() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

// live tells whether MinIO answers its liveness probe with its object layer
// up: until then it answers 200 but flags itself unavailable, and S3 calls
// fail with "Server not initialized yet".
func live(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Minio-Server-Status") == ""
}

// stsReady tells whether MinIO mints STS credentials. Its IAM subsystem
// starts in the background after the object layer, so a server that is live
// may still refuse AssumeRole for a moment.
func (m *MinIO) stsReady(client *http.Client) bool {
	creds, err := credentials.NewSTSAssumeRole("http://"+m.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey:       m.AccessKey,
		SecretKey:       m.SecretKey,
		DurationSeconds: 900,
	})
	if err != nil {
		return false
	}
	_, err = creds.GetWithContext(&credentials.CredContext{Client: client})
	return err == nil
}

// freeLoopbackPort is a TCP port free on 127.0.0.1, outside the ephemeral
// range (see freeport).
func freeLoopbackPort() (int, error) {
	port, err := freeport.Port("127.0.0.1", true, false)
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// Client returns a minio-go client with the root credentials.
func (m *MinIO) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Region: "us-east-1",
	})
	if err != nil {
		tb.Fatalf("minio client for %s: %v", m.Endpoint, err)
	}
	return c
}

// MakeBucket creates a bucket, for tests that need one that the code under
// test does not create itself.
func (m *MinIO) MakeBucket(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Client(tb).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("make bucket %s: %v", name, err)
	}
}
