package installer

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// fakeBins is a binaries directory: a small system executable stands in
// for the agent (any Linux executable does), a script for a plugin.
func fakeBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to stand in for the agent:", err)
	}
	if err := copyFile(exe, filepath.Join(dir, "outpost-agent")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outpost-plugin-package"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outpost"), []byte("not packed"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testConfig(t *testing.T) Config {
	return Config{Office: "berlin", Coordinator: "outpost.example.org:8027", CAFingerprint: "sha256:" + strings.Repeat("ab", 32),
		Token: "opt_secret", BinDir: fakeBins(t), OutDir: filepath.Join(t.TempDir(), "out"), Version: "dev",
		MTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed")
	}
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestBuild(t *testing.T) {
	cfg := testConfig(t)
	res, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"outpost-agent", "plugins/outpost-plugin-package", "agent.yaml", "outpost-agent.service", "install.sh", "postinst.sh", "prerm.sh", filepath.Base(res.Deb)}
	if strings.Join(res.Files, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", res.Files, want)
	}
	var got map[string]string
	b, _ := os.ReadFile(filepath.Join(cfg.OutDir, "agent.yaml"))
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"coordinator": cfg.Coordinator, "enroll_token": cfg.Token, "ca_fingerprint": cfg.CAFingerprint,
		"data_dir": "/var/lib/outpost-agent", "root": "/", "plugins_dir": "/usr/lib/outpost/plugins"} {
		if got[k] != v {
			t.Errorf("agent.yaml %s = %q, want %q", k, got[k], v)
		}
	}
	if fi, _ := os.Stat(filepath.Join(cfg.OutDir, "agent.yaml")); fi.Mode().Perm() != 0o600 {
		t.Errorf("agent.yaml mode %v: it holds the token, want 0600", fi.Mode())
	}

	// The .deb, as Debian's own tool reads it.
	info := dpkgDeb(t, "--info", res.Deb)
	for _, s := range []string{"Package: outpost-agent", "Version: 0.0.0~dev", "Architecture: " + res.Arch, "office berlin", "postinst", "prerm", "conffiles"} {
		if !strings.Contains(info, s) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", s, info)
		}
	}
	if conf := dpkgDeb(t, "--ctrl-tarfile", res.Deb); !strings.Contains(conf, "/etc/outpost/agent.yaml") {
		t.Errorf("agent.yaml is not a conffile")
	}
	listing := dpkgDeb(t, "--contents", res.Deb)
	for _, s := range []string{"-rwxr-xr-x root/root", "./usr/bin/outpost-agent", "./usr/lib/outpost/plugins/outpost-plugin-package",
		"-rw------- root/root", "./etc/outpost/agent.yaml", "./lib/systemd/system/outpost-agent.service", "2026-01-02"} {
		if !strings.Contains(listing, s) {
			t.Errorf("dpkg-deb --contents lacks %q:\n%s", s, listing)
		}
	}
	if strings.Contains(listing, "/usr/bin/outpost\n") {
		t.Errorf("the CLI was packed:\n%s", listing)
	}
	root := t.TempDir()
	dpkgDeb(t, "-x", res.Deb, root)
	packed, _ := os.ReadFile(filepath.Join(root, "etc/outpost/agent.yaml"))
	if !bytes.Equal(packed, b) {
		t.Errorf("the packed agent.yaml differs from the one in the directory")
	}

	// Same inputs, same package.
	cfg2 := cfg
	cfg2.OutDir = filepath.Join(t.TempDir(), "again")
	res2, err := Build(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := os.ReadFile(res.Deb)
	d2, _ := os.ReadFile(res2.Deb)
	if !bytes.Equal(d1, d2) {
		t.Errorf("two builds of the same installer differ")
	}
}

// An upgrade package is the installer without a token: it can sit on the
// file server as an artifact without letting anyone enrol.
func TestBuildUpgrade(t *testing.T) {
	cfg := testConfig(t)
	cfg.Token, cfg.Upgrade, cfg.Version = "", true, "1.6.0"
	res, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.6.0" || filepath.Base(res.Deb) != "outpost-agent_1.6.0_berlin_"+res.Arch+".deb" {
		t.Errorf("version %q, .deb %s", res.Version, res.Deb)
	}
	b, _ := os.ReadFile(filepath.Join(cfg.OutDir, "agent.yaml"))
	var got map[string]string
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["enroll_token"]; ok || got["coordinator"] != cfg.Coordinator || got["ca_fingerprint"] != cfg.CAFingerprint {
		t.Errorf("agent.yaml of an upgrade:\n%s", b)
	}
	if !strings.Contains(string(b), "no enroll_token; the computers it upgrades are enrolled already") {
		t.Errorf("agent.yaml does not say what it is for:\n%s", b)
	}
	if info := dpkgDeb(t, "--info", res.Deb); !strings.Contains(info, "Version: 1.6.0") || !strings.Contains(info, "Outpost agent (upgrade)") || strings.Contains(info, "Enrols") {
		t.Errorf("dpkg-deb --info:\n%s", info)
	}
	if sh, _ := os.ReadFile(filepath.Join(cfg.OutDir, "install.sh")); !strings.Contains(string(sh), "# Upgrades the Outpost agent") || strings.Contains(string(sh), "enrols") ||
		!strings.Contains(string(sh), "outpost-agent upgraded; a running agent restarts into it by itself") {
		t.Errorf("install.sh of an upgrade:\n%s", sh)
	}
}

func TestInstallScript(t *testing.T) {
	cfg := testConfig(t)
	if _, err := Build(cfg); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for run := 0; run < 2; run++ {
		cmd := exec.Command("sh", filepath.Join(cfg.OutDir, "install.sh"))
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		if run == 1 && !strings.Contains(string(out), "keeping the existing") {
			t.Errorf("a second run did not keep agent.yaml:\n%s", out)
		}
	}
	for path, mode := range map[string]os.FileMode{"usr/bin/outpost-agent": 0o755, "usr/lib/outpost/plugins/outpost-plugin-package": 0o755,
		"etc/outpost/agent.yaml": 0o600, "lib/systemd/system/outpost-agent.service": 0o644} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("install.sh did not install %s: %v", path, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		errHas string
	}{
		{"no agent binary", func(c *Config) { c.BinDir = t.TempDir() }, "pass --bin"},
		{"agent is no executable", func(c *Config) {
			c.BinDir = t.TempDir()
			os.WriteFile(filepath.Join(c.BinDir, "outpost-agent"), []byte("#!/bin/sh\n"), 0o755)
		}, "not a Linux executable"},
		{"output directory in use", func(c *Config) {
			os.MkdirAll(c.OutDir, 0o755)
			os.WriteFile(filepath.Join(c.OutDir, "x"), nil, 0o644)
		}, "is not empty"},
		{"no token", func(c *Config) { c.Token = "" }, "token"},
		{"a token in an upgrade", func(c *Config) { c.Upgrade = true }, "an upgrade package carries no enrollment token"},
		{"bad fingerprint", func(c *Config) { c.CAFingerprint = "abc" }, "fingerprint"},
		{"bad office", func(c *Config) { c.Office = "Berlin Office" }, "office"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.change(&cfg)
			_, err := Build(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Build: %v, want an error about %q", err, tc.errHas)
			}
		})
	}
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.2.3": "1.2.3", "1.0.0-rc1": "1.0.0~rc1", "dev": "0.0.0~dev", "": "0.0.0~dev", "1.0 beta": "0.0.0~dev",
		"1.2.3+5.gabc1234": "1.2.3+5.gabc1234", "0.0.301-dev+gf892ad1.dirty": "0.0.301~dev+gf892ad1.dirty"} {
		if got := debVersion(in); got != want {
			t.Errorf("debVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
