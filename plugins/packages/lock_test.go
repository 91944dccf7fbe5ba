//go:build unix || windows

package packages

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// said is a slog handler that tells, once, that a message was logged.
type said struct {
	msg  string
	once *sync.Once
	ch   chan struct{}
}

func newSaid(msg string) *said { return &said{msg: msg, once: new(sync.Once), ch: make(chan struct{})} }

func (s *said) Enabled(context.Context, slog.Level) bool { return true }
func (s *said) Handle(_ context.Context, r slog.Record) error {
	if r.Message == s.msg {
		s.once.Do(func() { close(s.ch) })
	}
	return nil
}
func (s *said) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *said) WithGroup(string) slog.Handler      { return s }

// holdInstall makes m stop at the first file it writes, until release is
// closed; held is closed once it is there.
func holdInstall(m *Manager) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.hook = func(point, _ string) error {
		if point == "file" {
			once.Do(func() {
				close(held)
				<-release
			})
		}
		return nil
	}
	return held, release
}

// TestApplyLockSerializesProcesses: two Managers stand in for two plugin
// processes on one root (one left behind by a killed agent, one started by
// the restarted agent). Only the lock in the state directory keeps them
// apart: the second waits until the first is done, instead of "recovering"
// the first one's install from under it.
func TestApplyLockSerializesProcesses(t *testing.T) {
	e := newEnv(t)
	a := e.m
	waiting := newSaid("waiting for another process changing packages under the same root")
	b := New(slog.New(waiting))
	heldA, releaseA := holdInstall(a)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(releaseA) }) }
	t.Cleanup(release)
	bWrote := make(chan struct{})
	var bOnce sync.Once
	b.hook = func(point, _ string) error {
		if point == "file" {
			bOnce.Do(func() { close(bWrote) })
		}
		return nil
	}

	p1, art1 := e.artifact(targz(t, hello1...))
	p2, art2 := e.artifact(targz(t, hello2...))
	type result struct {
		resp *proto.ApplyResponse
		err  error
	}
	apply := func(m *Manager, version, p string, art *wire.Artifact) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, ArtifactPath: p,
				Item: pkgItem("hello", version, "", wire.State_STATE_PRESENT, art)})
			ch <- result{resp, err}
		}()
		return ch
	}
	doneA := apply(a, "1.0.0", p1, art1)
	select {
	case <-heldA:
	case r := <-doneA:
		t.Fatalf("first apply finished before writing a file: %v, %v", r.resp, r.err)
	}
	doneB := apply(b, "2.0.0", p2, art2)
	select {
	case <-waiting.ch: // b is waiting for a's lock
	case <-bWrote:
		t.Fatal("the second process wrote files while the first was in the middle of its install")
	case r := <-doneB:
		t.Fatalf("the second process finished (%v, %v) while the first was in the middle of its install", r.resp, r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the second process neither waited nor went ahead")
	}
	select {
	case <-bWrote:
		t.Fatal("the second process wrote files while the first held the lock")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if r := <-doneA; r.err != nil || !strings.Contains(r.resp.GetMessage(), "installed hello 1.0.0") {
		t.Fatalf("first apply = %v, %v", r.resp, r.err)
	}
	if r := <-doneB; r.err != nil || !strings.Contains(r.resp.GetMessage(), "replaced hello 1.0.0 with 2.0.0") {
		t.Fatalf("second apply = %v, %v; want it to upgrade what the first installed", r.resp, r.err)
	}
	fresh := newEnv(t)
	fresh.mustInstall("hello", "2.0.0", hello2...)
	if got, want := e.tree(false), fresh.tree(false); !equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := e.scan(pkgItem("hello", "2.0.0", "", wire.State_STATE_PRESENT, art2)); !st.GetCompliant() {
		t.Fatalf("scan = %v", st)
	}
}

// TestApplyLockGivesUp: a process that cannot get the lock in time fails
// with an error that says why, and changes nothing; so does one whose
// context ends while it waits.
func TestApplyLockGivesUp(t *testing.T) {
	e := newEnv(t)
	heldA, releaseA := holdInstall(e.m)
	p1, art1 := e.artifact(targz(t, hello1...))
	doneA := make(chan error, 1)
	go func() {
		_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, ArtifactPath: p1,
			Item: pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, art1)})
		doneA <- err
	}()
	<-heldA
	defer func() {
		close(releaseA)
		if err := <-doneA; err != nil {
			t.Errorf("first apply: %v", err)
		}
	}()

	b := New(e.m.logger)
	b.lockWait = 200 * time.Millisecond
	p2, art2 := e.artifact(targz(t, hello2...))
	req := &proto.ApplyRequest{Root: e.root, ArtifactPath: p2, Item: pkgItem("hello", "2.0.0", "", wire.State_STATE_PRESENT, art2)}
	start := time.Now()
	_, err := b.Apply(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "another process (pid ") ||
		!strings.Contains(err.Error(), "is changing the packages under "+e.root) ||
		!strings.Contains(err.Error(), "the next run tries again") {
		t.Fatalf("apply while another process holds the lock = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("gave up after %v, want about 200ms", d)
	}

	b.lockWait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := b.Apply(ctx, req); err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("apply whose context ends while it waits = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("gave up after %v, want about 200ms", d)
	}
	if e.exists("opt/hello/share/doc/hello/NEWS") {
		t.Fatal("a process without the lock installed files")
	}
}
