package packages_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// sample returns the path and artifact of one of the committed sample
// packages in testdata/packages.
func sample(t *testing.T, name string) (string, *wire.Artifact) {
	t.Helper()
	return plugintest.Sample(t, name)
}

func helloItem(state wire.State, version string, art *wire.Artifact) *wire.Item {
	return &wire.Item{
		Id: "package/hello", Kind: "package", State: state, Artifact: art,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: version}},
	}
}

// TestPluginSubprocess runs outpost-plugin-package as the agent does: built
// from source, started through plugins.Open, driven over gRPC.
func TestPluginSubprocess(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/packages/cmd/outpost-plugin-package")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := plugins.Open(ctx, bin, logging.Discard())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	root := t.TempDir()

	d, err := c.Describe(ctx)
	if err != nil || d.GetKind() != "package" || c.Kind() != "package" {
		t.Fatalf("Describe = %v, %v; want kind package", d, err)
	}

	scan := func(item *wire.Item) *proto.ItemState {
		t.Helper()
		resp, err := c.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
		if err != nil || len(resp.GetItems()) != 1 {
			t.Fatalf("Scan = %v, %v", resp, err)
		}
		return resp.GetItems()[0]
	}
	apply := func(item *wire.Item, artifactPath string) (*proto.ApplyResponse, error) {
		t.Helper()
		return c.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item, ArtifactPath: artifactPath})
	}

	p1, a1 := sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := sample(t, "hello-2.0.0.tar.gz")
	hello := filepath.Join(root, "opt", "hello", "bin", "hello")
	greeting := filepath.Join(root, "opt", "hello", "share", "hello", "greeting")

	steps := []struct {
		name        string
		item        *wire.Item
		path        string
		wantChanged bool
		wantMsg     string
		check       func(t *testing.T)
	}{
		{
			name: "install 1.0.0", item: helloItem(wire.State_STATE_PRESENT, "1.0.0", a1), path: p1,
			wantChanged: true, wantMsg: "installed hello 1.0.0",
			check: func(t *testing.T) {
				b, err := os.ReadFile(hello)
				if err != nil || !strings.Contains(string(b), `echo "hello 1.0.0"`) {
					t.Fatalf("bin/hello = %q, %v", b, err)
				}
				if runtime.GOOS == "windows" {
					return
				}
				if out, err := exec.Command(hello).Output(); err != nil || string(out) != "hello 1.0.0\n" {
					t.Fatalf("running bin/hello = %q, %v", out, err)
				}
			},
		},
		{
			name: "install 1.0.0 again", item: helloItem(wire.State_STATE_PRESENT, "1.0.0", a1), path: p1,
			wantChanged: false, wantMsg: "hello 1.0.0 is installed",
		},
		{
			name: "upgrade to 2.0.0", item: helloItem(wire.State_STATE_PRESENT, "2.0.0", a2), path: p2,
			wantChanged: true, wantMsg: "replaced hello 1.0.0 with 2.0.0",
			check: func(t *testing.T) {
				if _, err := os.Stat(greeting); !os.IsNotExist(err) {
					t.Fatalf("share/hello/greeting of 1.0.0 still there: %v", err)
				}
			},
		},
		{
			name: "remove", item: helloItem(wire.State_STATE_ABSENT, "", nil),
			wantChanged: true, wantMsg: "removed hello 2.0.0",
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(root, "opt")); !os.IsNotExist(err) {
					t.Fatalf("/opt still there after remove: %v", err)
				}
			},
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			resp, err := apply(step.item, step.path)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetChanged() != step.wantChanged || !strings.Contains(resp.GetMessage(), step.wantMsg) {
				t.Fatalf("Apply = %v, want changed=%v and %q", resp, step.wantChanged, step.wantMsg)
			}
			if st := scan(step.item); !st.GetCompliant() {
				t.Fatalf("Scan after apply = %v, want compliant", st)
			}
			if step.check != nil {
				step.check(t)
			}
		})
	}

	t.Run("drift is reported", func(t *testing.T) {
		if _, err := apply(helloItem(wire.State_STATE_PRESENT, "1.0.0", a1), p1); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(hello); err != nil {
			t.Fatal(err)
		}
		st := scan(helloItem(wire.State_STATE_PRESENT, "1.0.0", a1))
		if st.GetCompliant() || st.GetMessage() != "file opt/hello/bin/hello missing" {
			t.Fatalf("Scan after deleting bin/hello = %v, want the missing file named", st)
		}
	})

	t.Run("unsafe archive is refused with its reason", func(t *testing.T) {
		evil := filepath.Join(t.TempDir(), "evil.tar.gz")
		if err := os.WriteFile(evil, escapingArchive(t), 0o644); err != nil {
			t.Fatal(err)
		}
		item := &wire.Item{
			Id: "package/evil", Kind: "package", State: wire.State_STATE_PRESENT,
			Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "evil", Version: "1"}},
		}
		_, err := apply(item, evil)
		if err == nil || !strings.Contains(err.Error(), "plugin package: apply package/evil: install evil 1: archive entry ../../etc/passwd escapes the prefix") {
			t.Fatalf("Apply(evil) = %v, want the refused entry named", err)
		}
		if c.Exited() {
			t.Fatal("plugin exited after refusing an archive")
		}
	})
}

func escapingArchive(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("root::0:0::/:/bin/sh\n")
	if err := tw.WriteHeader(&tar.Header{Name: "../../etc/passwd", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestSamplePackagesAreReproducible regenerates testdata/packages and
// compares: the committed files must be what gen.go makes. If this fails
// after a change to gen.go, run `go run testdata/packages/gen.go`.
func TestSamplePackagesAreReproducible(t *testing.T) {
	repo := testutil.RepoRoot(t)
	out := t.TempDir()
	cmd := exec.Command("go", "run", "testdata/packages/gen.go", "-out", out)
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, b)
	}
	// The archives' contents must be what gen.go makes. Their gzip bytes
	// depend on the Go that compresses them (Go 1.27's deflate differs
	// from 1.26's), so the tar streams are compared, and SHA256SUMS must
	// name the committed files.
	var sums bytes.Buffer
	for _, name := range []string{"hello-1.0.0.tar.gz", "hello-2.0.0.tar.gz"} {
		got := gunzip(t, filepath.Join(out, name))
		committed := filepath.Join(repo, "testdata", "packages", name)
		if !bytes.Equal(got, gunzip(t, committed)) {
			t.Errorf("testdata/packages/%s holds other files than gen.go makes; run go run testdata/packages/gen.go", name)
		}
		b, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	if want, err := os.ReadFile(filepath.Join(repo, "testdata", "packages", "SHA256SUMS")); err != nil || string(want) != sums.String() {
		t.Errorf("testdata/packages/SHA256SUMS does not name the committed archives (%v): it has\n%s\nwant\n%s", err, want, sums.String())
	}
}

// gunzip is the uncompressed content of a .gz file.
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}
