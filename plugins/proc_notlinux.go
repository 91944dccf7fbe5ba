//go:build !linux

package plugins

import "syscall"

// dieWithHost does nothing where there is no parent-death signal: a plugin
// outlives a host that is killed, until its next call fails.
func dieWithHost(*syscall.SysProcAttr) {}

// startPinned just runs start: without a parent-death signal, which thread
// forks the plugin does not matter.
func startPinned(start func() error, _ func() bool) error { return start() }

// pinBinary names the binary by its path: the exec may run a file renamed
// into its place after the checksum was checked.
func pinBinary(path string, _ []byte) (string, func(), error) { return path, func() {}, nil }
