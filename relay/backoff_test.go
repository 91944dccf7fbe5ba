package relay

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/outposthq/outpost/relay/internal/cache"
)

func TestBackoff(t *testing.T) {
	b := newBackoff(5*time.Second, 5*time.Minute)
	var got []time.Duration
	for range 9 {
		got = append(got, b.failed())
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds: doubling up to 5 minutes", got, want)
		}
	}
	b.succeeded()
	if d := b.failed(); d != 5*time.Second {
		t.Errorf("after a success the wait is %v, want 5s again", d)
	}
}

func TestFailureKind(t *testing.T) {
	full := &cache.DiskFullError{Hash: "h", Need: 10, Free: 1}
	fullLater := &cache.DiskFullError{Hash: "h", Need: 10, Free: 2}
	up := func(n int) error { return fmt.Errorf("get h: %w: read after %d bytes: reset", cache.ErrUpstream, n) }
	if failureKind(full) != failureKind(fullLater) || failureKind(up(1)) != failureKind(up(2)) {
		t.Error("the same failure with other numbers counts as another")
	}
	if failureKind(full) == failureKind(up(1)) || failureKind(errors.New("a")) == failureKind(errors.New("b")) {
		t.Error("different failures count as the same")
	}
}
