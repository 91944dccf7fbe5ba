//go:build ignore

// gen writes the sample packages hello-1.0.0.tar.gz and hello-2.0.0.tar.gz
// and their SHA256SUMS. The archives' contents are reproducible (fixed
// times, owners and order), so the committed files only change when this
// program does; their gzip bytes also depend on the Go that compresses
// them, so the committed ones are kept when only Go changed. Run from the
// repository root:
//
//	go run testdata/packages/gen.go
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

type entry struct {
	name string
	mode int64
	body string // a directory when empty and name ends in /
}

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func hello(version string, extra ...entry) []entry {
	entries := []entry{
		{name: "bin/", mode: 0o755},
		{name: "bin/hello", mode: 0o755, body: "#!/bin/sh\necho \"hello " + version + "\"\n"},
		{name: "share/", mode: 0o755},
		{name: "share/doc/", mode: 0o755},
		{name: "share/doc/hello/", mode: 0o755},
		{name: "share/doc/hello/README", mode: 0o644, body: "hello " + version + "\n\nA sample Outpost package: bin/hello prints its version.\n"},
	}
	return append(entries, extra...)
}

var packages = map[string][]entry{
	"hello-1.0.0.tar.gz": hello("1.0.0",
		entry{name: "share/hello/", mode: 0o755},
		entry{name: "share/hello/greeting", mode: 0o644, body: "hello from 1.0.0\n"},
	),
	"hello-2.0.0.tar.gz": hello("2.0.0",
		entry{name: "share/doc/hello/NEWS", mode: 0o644, body: "2.0.0: share/hello/greeting is gone.\n"},
	),
}

func build(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = epoch
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: epoch,
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatUSTAR,
		}
		if e.name[len(e.name)-1] == '/' {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func main() {
	out := flag.String("out", "testdata/packages", "directory to write the packages to")
	flag.Parse()
	var sums bytes.Buffer
	for _, name := range []string{"hello-1.0.0.tar.gz", "hello-2.0.0.tar.gz"} {
		data, err := build(packages[name])
		if err != nil {
			log.Fatalf("build %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(*out, name), data, 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(data), name)
		fmt.Printf("%s: %d bytes, sha256 %x\n", name, len(data), sha256.Sum256(data))
	}
	if err := os.WriteFile(filepath.Join(*out, "SHA256SUMS"), sums.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
