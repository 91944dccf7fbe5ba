package session

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// A SessionOpen that announces more than wire.MaxSessionOpenSize ends the
// session at once: nothing of it is read or answered.
func TestServeRefusesOversizeSessionOpen(t *testing.T) {
	f := newFixture(t)
	tech, host := net.Pipe()
	t.Cleanup(func() { tech.Close() })
	served := make(chan struct{})
	go func() {
		defer close(served)
		f.s.Serve(context.Background(), host, func() { host.Close() })
	}()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], wire.MaxSessionOpenSize+1)
	if _, err := tech.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("an oversize SessionOpen kept the session waiting")
	}
	if b, _ := io.ReadAll(tech); len(b) != 0 {
		t.Fatalf("an oversize SessionOpen was answered with %d bytes", len(b))
	}
}

// A large real one, an exec with a 100 KiB argument, is taken.
func TestServeTakesLargeSessionOpen(t *testing.T) {
	f := newFixture(t)
	_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/bin/sh", "-c", `printf '%s' "${#1}"`, "sh", strings.Repeat("x", 100<<10)}})
	r := wait(t, res, 10*time.Second)
	if r.accepted == nil || r.end.GetExitCode() != 0 || r.stdout.String() != "102400" {
		t.Fatalf("accepted %v stdout %q stderr %q end %v", r.accepted, r.stdout.String(), r.stderr.String(), r.end)
	}
}
