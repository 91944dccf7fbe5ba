package config

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestDecimalFlags(t *testing.T) {
	tests := []struct {
		arg     string
		want    int64
		wantErr string
	}{
		{"10", 10, ""},
		{"010", 10, ""},
		{"08", 8, ""},
		{"-3", -3, ""},
		{"0x10", 0, "not a whole number in decimal"},
		{"1_000", 0, "not a whole number in decimal"},
		{"", 0, "not a whole number in decimal"},
		{"9223372036854775808", 0, "value out of range"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var n64 int64
		Int64Var(fs, &n64, "n64", 5, "`N`")
		n := Int(fs, "n", 7, "`N`")
		err := fs.Parse([]string{"--n64", tt.arg, "--n", tt.arg})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.arg, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.arg, err)
			continue
		}
		if n64 != tt.want || int64(*n) != tt.want {
			t.Errorf("%q: got %d and %d, want %d", tt.arg, n64, *n, tt.want)
		}
	}

	// Defaults hold until a flag is given, and --help shows them.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	n := Int(fs, "uses", 100, "how many computers (`N`) may enrol")
	var zero int
	IntVar(fs, &zero, "zero", 0, "a `count`")
	if err := fs.Parse(nil); err != nil || *n != 100 {
		t.Fatalf("default %d, err %v", *n, err)
	}
	fs.PrintDefaults()
	if got := out.String(); !strings.Contains(got, "-uses N") || !strings.Contains(got, "(default 100)") || strings.Contains(got, "(default 0)") {
		t.Fatalf("help:\n%s", got)
	}
}

// A mistake in a flag is said once, pointing to -h; -h prints the usage.
func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	fs := flag.NewFlagSet("outpost-thing", flag.ContinueOnError)
	fs.SetOutput(&out)
	fs.String("data-dir", "", "where")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: outpost-thing [flags]") }
	help, err := ParseFlags(fs, []string{"--bogus"})
	if help || err == nil || err.Error() != "flag provided but not defined: -bogus (see outpost-thing -h)" || out.Len() != 0 {
		t.Fatalf("a wrong flag: help %v, err %v, printed %q", help, err, out.String())
	}
	help, err = ParseFlags(fs, []string{"-h"})
	if !help || err != nil || out.String() != "Usage: outpost-thing [flags]\n" {
		t.Fatalf("-h: help %v, err %v, printed %q", help, err, out.String())
	}
	if help, err := ParseFlags(fs, []string{"--data-dir", "/x"}); help || err != nil {
		t.Fatalf("good flags: %v %v", help, err)
	}
}
