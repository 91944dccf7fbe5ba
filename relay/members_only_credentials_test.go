package relay

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// A relay told to join a coordinator serves members only over HTTPS even
// when it reads the file server with fixed credentials of its own: the
// credentials say how it reads, not whether it is a member. With both
// set it never joined, and anyone on the office's network got any
// artifact by its hash, members_only notwithstanding.
func TestHTTPSWithFixedCredentialsStillServesMembersOnly(t *testing.T) {
	m := testutil.StartMinIO(t)
	const bucket = "outpost-artifacts"
	m.MakeBucket(t, bucket)
	data := []byte("an artifact for the office's members")
	hash := hashOf(data)
	if _, err := m.Client(t).PutObject(context.Background(), bucket, "sha256/"+hash, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	ca := newMiniCA(t)
	cfg := testConfig(t)
	cfg.PlainHTTP = false
	cfg.TLSCertFile, cfg.TLSKeyFile = writeTestPair(t, ca, "127.0.0.1")
	cfg.FileServer = FileServerConfig{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	cfg.Coordinator = "127.0.0.1:1" // nothing listens: the relay has not joined yet
	cfg.EnrollToken = "opt_test"
	cfg.CAFingerprint = tlsutil.Fingerprint(ca.cert.Raw)
	if !cfg.MembersOnly {
		t.Fatal("members_only is not the default")
	}
	tr := startRelay(t, cfg)

	conf := tlsutil.RelayClientTLS("127.0.0.1", func() []*x509.Certificate { return []*x509.Certificate{ca.cert} })
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	resp, err := stranger.Get(strings.Replace(tr.url, "http://", "https://", 1) + BlobPath + hash)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a client without a member certificate got %d (%d bytes); want 403, or 503 before the relay has joined", resp.StatusCode, len(body))
	}
	if bytes.Contains(body, data) {
		t.Fatal("a client without a member certificate got the artifact")
	}
}
