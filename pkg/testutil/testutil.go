// Package testutil holds helpers that the tests of two or more parts share:
// waiting for a condition, finding the repository, starting a real MinIO.
// It is imported only from tests.
package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Eventually calls cond every tick until it returns true or timeout passes,
// then fails the test with msg. Use it instead of sleeping.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RepoRoot returns the repository's top directory (the one with go.mod).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TerminalControls names the first terminal control (C0, DEL, C1, format
// characters such as bidi overrides) or invalid byte in s, "" if none:
// what text shown on an admin's terminal must not carry.
func TerminalControls(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, c := range s {
		if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) {
			return fmt.Sprintf("%U", c)
		}
	}
	return ""
}
