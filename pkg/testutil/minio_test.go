package testutil

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestStartMinIO(t *testing.T) {
	// Two servers in one test: they must not share a port or data.
	var servers [2]*MinIO
	for i := range servers {
		servers[i] = StartMinIO(t)
	}
	if servers[0].Endpoint == servers[1].Endpoint {
		t.Fatalf("both servers on %s", servers[0].Endpoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers[0].MakeBucket(t, "only-in-first")
	for i, want := range []bool{true, false} {
		got, err := servers[i].Client(t).BucketExists(ctx, "only-in-first")
		if err != nil {
			t.Fatalf("server %d: bucket exists: %v", i, err)
		}
		if got != want {
			t.Errorf("server %d: bucket exists = %v, want %v", i, got, want)
		}
	}
}

func TestStartMinIOStopsAtCleanup(t *testing.T) {
	var endpoint string
	t.Run("server", func(t *testing.T) {
		endpoint = StartMinIO(t).Endpoint
	})
	// The subtest's Cleanup has killed and reaped the server by now.
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + endpoint + "/minio/health/live")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("minio on %s still answers after its test ended", endpoint)
	}
}
