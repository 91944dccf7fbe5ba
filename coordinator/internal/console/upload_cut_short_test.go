package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// A form upload whose file part ends before the form's closing boundary
// (the body ended early, though well framed, as through a proxy that
// ends it cleanly when its client goes away) is not stored: the
// multipart reader says io.ErrUnexpectedEOF, which the file server's
// client (minio-go) took for the end of a stream of unknown length, so
// that the bytes that came were stored as the whole artifact under the
// file's name, with "Uploaded" shown.
func TestAFormUploadCutShortIsNotStored(t *testing.T) {
	m := testutil.StartMinIO(t)
	cfg := artifacts.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	files, err := artifacts.New(cfg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := files.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, files)
	b := e.signIn("", adminToken)
	body := "--b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b.csrf + "\r\n" +
		"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello-1.0.0.tar.gz\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("h", 5000)
	req := httptest.NewRequest("POST", "/ui/artifacts", strings.NewReader(body))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b0undary")
	req.Header.Set("Origin", "http://"+host)
	res, page := b.do(req)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(page, "cut short") {
		t.Errorf("form upload cut short: %d, want 400 saying it was cut short\n%s", res.StatusCode, page)
	}
	var arts struct{ Artifacts []artifact }
	e.apiDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 0 {
		t.Fatalf("an upload cut short was stored: %+v", arts.Artifacts)
	}
	root := m.Client(t)
	for obj := range root.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("left in the bucket: %s (%v)", obj.Key, obj.Err)
	}
	for u := range root.ListIncompleteUploads(ctx, cfg.Bucket, "", true) {
		t.Errorf("multipart upload left: %s (%v)", u.Key, u.Err)
	}
}
