//go:build !linux

package bench

import (
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
)

func herdChild() (bool, error) { return false, nil }

func warmBetweenHosts(b *testing.B, bin, nginx string, m *testutil.MinIO, cl *minio.Client, wanAddr string,
	relays, nginxes []string, size int, total int64, runs int) ([]warmResult, string) {
	return nil, "not run: needs Linux (network namespaces)"
}
