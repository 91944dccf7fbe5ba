// Package installer builds what an admin hands to the computers of one
// office: the agent and plugin binaries, an agent.yaml that carries the
// coordinator's public address, its CA fingerprint and an enrollment token,
// a systemd unit, an install script, and a .deb made with nfpm that puts
// all of it in place and starts the agent.
//
// It runs where the outpost CLI runs, next to the binaries it packs; it
// never talks to the coordinator (the CLI asks the API for the values) and
// never installs anything itself.
package installer

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// Where the installed files go on a computer.
const (
	BinPath     = "/usr/bin/outpost-agent"
	PluginsDir  = "/usr/lib/outpost/plugins"
	ConfigPath  = "/etc/outpost/agent.yaml"
	UnitPath    = "/lib/systemd/system/outpost-agent.service"
	DataDir     = "/var/lib/outpost-agent"
	PackageName = "outpost-agent"
	agentBinary = "outpost-agent"
	pluginGlob  = "outpost-plugin-*"
)

// Config is what one installer is built from.
type Config struct {
	Office string
	// Coordinator is the coordinator's public QUIC address, host:port.
	Coordinator   string
	CAFingerprint string
	// Token is the enrollment token's secret; it ends up in agent.yaml.
	Token string
	// Upgrade builds a package for computers enrolled already, to
	// upgrade them (through their policy or by hand): no token, so that
	// the package can be stored and handed around like any artifact.
	Upgrade bool
	// BinDir holds outpost-agent and the outpost-plugin-* binaries.
	BinDir string
	// OutDir is created; it must not exist or be empty.
	OutDir string
	// Version of the package, SemVer as scripts/version.sh makes it;
	// anything that does not start with a digit (a "dev" build) becomes
	// 0.0.0~dev.
	Version string
	// MTime stamps the package's files; zero is now. A fixed time makes
	// the same inputs give the same .deb.
	MTime time.Time
}

// Result says what was built.
type Result struct {
	Dir     string
	Deb     string   // path of the .deb
	Version string   // the .deb's version
	Arch    string   // Debian architecture of the agent binary
	Plugins []string // plugin binary names
	Files   []string // every file in Dir, relative
}

var officeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c Config) validate() error {
	var errs []error
	if !officeName.MatchString(c.Office) {
		errs = append(errs, fmt.Errorf("office %q is not an office name", c.Office))
	}
	if c.Coordinator == "" || strings.ContainsAny(c.Coordinator, " \n\"'") {
		errs = append(errs, fmt.Errorf("coordinator address %q: want host:port", c.Coordinator))
	}
	// The agent pins what it reads here before its first dial: one it
	// cannot read would stop every computer the installer reaches.
	if _, err := tlsutil.NormalizeFingerprint(c.CAFingerprint); err != nil || !strings.HasPrefix(c.CAFingerprint, "sha256:") {
		errs = append(errs, fmt.Errorf("CA fingerprint %q: want sha256:<64 hex digits>", c.CAFingerprint))
	}
	switch {
	case c.Upgrade && c.Token != "":
		errs = append(errs, errors.New("an upgrade package carries no enrollment token"))
	case !c.Upgrade && (c.Token == "" || strings.ContainsAny(c.Token, " \n\"'")):
		errs = append(errs, errors.New("the enrollment token is empty or malformed"))
	}
	if c.BinDir == "" || c.OutDir == "" {
		errs = append(errs, errors.New("the binaries directory and the output directory are required"))
	}
	return errors.Join(errs...)
}

// Build writes the installer into cfg.OutDir. It builds in a temporary
// directory beside it, syncs every file, and renames it into place: a
// build cut short (a kill, a full disk, a power loss) leaves no directory
// that looks like an installer, and the next build is not refused. What a
// killed build left (hidden, with its token) goes at the next build of the
// same directory an hour or more later.
func Build(cfg Config) (res *Result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("build installer: %w", err)
	}
	final := filepath.Clean(cfg.OutDir)
	if err := CheckOutDir(final); err != nil {
		return nil, err
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	removeKilledBuilds(parent, filepath.Base(final), time.Now().Add(-killedBuildAge))
	// The directory will hold the token: only its owner reads it (MkdirTemp
	// makes it 0700).
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".partial-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	cfg.OutDir = tmp
	if res, err = build(cfg); err != nil {
		return nil, err
	}
	if err := syncTree(tmp); err != nil {
		return nil, err
	}
	if err := os.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err // CheckOutDir found it empty
	}
	if err := fsutil.Rename(tmp, final); err != nil {
		return nil, err
	}
	res.Dir, res.Deb = final, filepath.Join(final, filepath.Base(res.Deb))
	return res, nil
}

// killedBuildAge is how old a temporary build directory must be before a
// later build takes it for one that was killed: far more than a build takes.
const killedBuildAge = time.Hour

// removeKilledBuilds removes the temporary directories that builds of
// parent/base killed before their cleanup (Ctrl-C ends the CLI at once)
// left, when they were last written before cutoff: each holds a live
// enrolment token, hidden beside the installer the admin knows of. Builds
// of other directories, and one under way, are left alone; what cannot be
// removed stays, as it did.
func removeKilledBuilds(parent, base string, cutoff time.Time) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	prefix := "." + base + ".partial-"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		// MkdirTemp's random part is decimal digits.
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" || !e.IsDir() {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

// syncTree makes every file and directory under dir durable.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		return nil
	})
}

// build writes the installer into cfg.OutDir, which exists and is empty.
func build(cfg Config) (*Result, error) {
	if cfg.MTime.IsZero() {
		cfg.MTime = time.Now()
	}
	agentSrc := filepath.Join(cfg.BinDir, agentBinary)
	arch, err := debArch(agentSrc)
	if err != nil {
		return nil, err
	}
	plugins, err := filepath.Glob(filepath.Join(cfg.BinDir, pluginGlob))
	if err != nil {
		return nil, err
	}
	sort.Strings(plugins)
	res := &Result{Dir: cfg.OutDir, Arch: arch}
	write := func(rel string, data []byte, mode os.FileMode) error {
		p := filepath.Join(cfg.OutDir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		res.Files = append(res.Files, rel)
		return nil
	}
	if err := copyFile(agentSrc, filepath.Join(cfg.OutDir, agentBinary)); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, agentBinary)
	for _, p := range plugins {
		name := filepath.Base(p)
		if err := copyFile(p, filepath.Join(cfg.OutDir, "plugins", name)); err != nil {
			return nil, err
		}
		res.Plugins = append(res.Plugins, name)
		res.Files = append(res.Files, filepath.Join("plugins", name))
	}
	yml, err := AgentYAML(cfg)
	if err != nil {
		return nil, err
	}
	// agent.yaml holds the token's secret: only root reads it.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"agent.yaml", yml, 0o600},
		{"outpost-agent.service", []byte(systemdUnit), 0o644},
		{"install.sh", render(installScript, cfg), 0o755},
		{"postinst.sh", []byte(postinst), 0o755},
		{"prerm.sh", []byte(prerm), 0o755},
	} {
		if err := write(f.name, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	res.Version = debVersion(cfg.Version)
	res.Deb = filepath.Join(cfg.OutDir, fmt.Sprintf("%s_%s_%s_%s.deb", PackageName, debVersion(cfg.Version), cfg.Office, arch))
	if err := buildDeb(cfg, res); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, filepath.Base(res.Deb))
	return res, nil
}

// AgentYAML is the agent's configuration for the office's computers.
func AgentYAML(cfg Config) ([]byte, error) {
	var doc struct {
		Coordinator   string `yaml:"coordinator"`
		EnrollToken   string `yaml:"enroll_token,omitempty"`
		CAFingerprint string `yaml:"ca_fingerprint"`
		DataDir       string `yaml:"data_dir"`
		Root          string `yaml:"root"`
		PluginsDir    string `yaml:"plugins_dir"`
	}
	doc.Coordinator, doc.EnrollToken, doc.CAFingerprint = cfg.Coordinator, cfg.Token, cfg.CAFingerprint
	doc.DataDir, doc.Root, doc.PluginsDir = DataDir, "/", PluginsDir
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode agent.yaml: %w", err)
	}
	head := fmt.Sprintf("# Outpost agent of office %s, made by outpost installer build.\n"+
		"# enroll_token is used once, at the first start; keep this file root-only.\n", cfg.Office)
	if cfg.Upgrade {
		head = fmt.Sprintf("# Outpost agent, made by outpost installer build --upgrade for office %s:\n"+
			"# no enroll_token; the computers it upgrades are enrolled already.\n", cfg.Office)
	}
	return append([]byte(head), body...), nil
}

// CheckOutDir says whether dir can take an installer: it must not exist or
// be empty. Check before asking for a token, so none is made for nothing.
func CheckOutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("output directory %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("output directory %s is not empty: pass another --out or remove it", dir)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// debArch reads the Debian architecture of a Linux executable.
func debArch(path string) (string, error) {
	f, err := elf.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s is not there: pass --bin with the directory of outpost-agent and the outpost-plugin-* binaries (make build puts them in ./bin)", path)
	}
	if err != nil {
		return "", fmt.Errorf("%s is not a Linux executable (%v): build the agent for Linux (GOOS=linux)", path, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "i386", nil
	case elf.EM_ARM:
		return "armhf", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("%s is for machine %v, which the installer does not package", path, f.Machine)
}

var debVersionPattern = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// debVersion is the package version for a SemVer build version (see
// scripts/version.sh). A hyphen becomes a tilde: in SemVer it starts a
// pre-release, which comes before the release, and dpkg sorts a tilde
// before anything (a hyphen would instead start a Debian revision, after
// it). So 1.0.0-rc1 is 1.0.0~rc1 < 1.0.0, and 0.0.301-dev+g1234abc sorts
// by its commit count.
func debVersion(v string) string {
	v = strings.ReplaceAll(strings.TrimPrefix(v, "v"), "-", "~")
	if !debVersionPattern.MatchString(v) {
		return "0.0.0~dev"
	}
	return v
}

func buildDeb(cfg Config, res *Result) error {
	root := &files.ContentFileInfo{Owner: "root", Group: "root"}
	mode := func(m os.FileMode) *files.ContentFileInfo {
		c := *root
		c.Mode = m
		return &c
	}
	src := func(rel string) string { return filepath.Join(cfg.OutDir, rel) }
	contents := files.Contents{
		{Source: src(agentBinary), Destination: BinPath, FileInfo: mode(0o755)},
		{Destination: PluginsDir, Type: files.TypeDir, FileInfo: mode(0o755)},
		{Destination: filepath.Dir(ConfigPath), Type: files.TypeDir, FileInfo: mode(0o700)},
		{Source: src("agent.yaml"), Destination: ConfigPath, Type: files.TypeConfigNoReplace, FileInfo: mode(0o600)},
		{Source: src("outpost-agent.service"), Destination: UnitPath, FileInfo: mode(0o644)},
	}
	for _, p := range res.Plugins {
		contents = append(contents, &files.Content{Source: src(filepath.Join("plugins", p)), Destination: PluginsDir + "/" + p, FileInfo: mode(0o755)})
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          PackageName,
		Arch:          res.Arch,
		Platform:      "linux",
		Version:       debVersion(cfg.Version),
		VersionSchema: "none",
		Section:       "admin",
		Maintainer:    "Outpost <outpost@localhost>",
		Description:   description(cfg),
		Homepage:      "https://github.com/outposthq/outpost",
		License:       "Apache-2.0",
		MTime:         cfg.MTime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts:  nfpm.Scripts{PostInstall: src("postinst.sh"), PreRemove: src("prerm.sh")},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return fmt.Errorf("package %s: %w", res.Deb, err)
	}
	deb.Default.SetPackagerDefaults(info)
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return fmt.Errorf("package %s: %w", res.Deb, err)
	}
	if err := os.WriteFile(res.Deb, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", res.Deb, err)
	}
	return nil
}

// description is the package's: an upgrade package enrols nothing.
func description(cfg Config) string {
	if cfg.Upgrade {
		return fmt.Sprintf("Outpost agent (upgrade)\n"+
			"Keeps this computer patched, supplied with software and configured by the\n"+
			"Outpost coordinator at %s. For computers enrolled already: it carries no\n"+
			"enrolment token, and the running agent restarts into it by itself.", cfg.Coordinator)
	}
	return fmt.Sprintf("Outpost agent for office %s\n"+
		"Keeps this computer patched, supplied with software and configured by the\n"+
		"Outpost coordinator at %s. Enrols on first start.", cfg.Office, cfg.Coordinator)
}

func render(t *template.Template, cfg Config) []byte {
	var b bytes.Buffer
	if err := t.Execute(&b, cfg); err != nil {
		panic(err) // the templates are constants; tests run them
	}
	return b.Bytes()
}

const systemdUnit = `[Unit]
Description=Outpost agent
Documentation=https://github.com/outposthq/outpost
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/outpost-agent --config /etc/outpost/agent.yaml
Restart=always
RestartSec=5
# The agent installs software and changes the system: it runs as root.
StateDirectory=outpost-agent
StateDirectoryMode=0700

[Install]
WantedBy=multi-user.target
`

// postinst enables and starts the agent where systemd runs (not in a
// chroot or container build).
const postinst = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable --now outpost-agent.service
fi
`

const prerm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl disable --now outpost-agent.service || true
fi
`

var installScript = template.Must(template.New("install.sh").Parse(`#!/bin/sh
{{if .Upgrade}}# Upgrades the Outpost agent on this computer (Linux with systemd): it
# carries no enrolment token, for computers enrolled with the coordinator at
# {{.Coordinator}} already; the running agent restarts into the new version
# by itself. On Debian and Ubuntu the .deb next to this script does the
# same: apt install ./outpost-agent_*.deb{{else}}# Installs the Outpost agent of office {{.Office}} on this computer (Linux
# with systemd) and starts it; it enrols with the coordinator at
# {{.Coordinator}} on first start. On Debian and Ubuntu the .deb next to this
# script does the same: apt install ./outpost-agent_*.deb{{end}}
#
# DESTDIR=/some/root sh install.sh installs under another root and starts
# nothing. An existing /etc/outpost/agent.yaml is kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${DESTDIR:-}
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
	echo "install.sh: run as root: sudo sh $0" >&2
	exit 1
fi
# put MODE FROM TO: TO is the old file or the whole new one, never part of
# it. The copy is written and synced beside it, under a name no glob of the
# agent matches, and renamed into place: a run cut short (a kill, a power
# cut, a full disk) leaves what was there before, and running it again
# finishes the job.
tmp=
trap 'if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT
put() {
	tmp="$(dirname "$3")/.$(basename "$3").install-new"
	install -m "$1" "$2" "$tmp"
	sync "$tmp" 2>/dev/null || sync
	mv -f "$tmp" "$3"
	tmp=
}
install -d -m 0755 "$root/usr/bin" "$root{{"/usr/lib/outpost/plugins"}}" "$root/lib/systemd/system"
install -d -m 0700 "$root/etc/outpost"
put 0755 "$here/outpost-agent" "$root/usr/bin/outpost-agent"
for p in "$here"/plugins/outpost-plugin-*; do
	[ -e "$p" ] || continue
	put 0755 "$p" "$root/usr/lib/outpost/plugins/$(basename "$p")"
done
if [ -e "$root/etc/outpost/agent.yaml" ]; then
	echo "install.sh: keeping the existing $root/etc/outpost/agent.yaml"
else
	put 0600 "$here/agent.yaml" "$root/etc/outpost/agent.yaml"
fi
put 0644 "$here/outpost-agent.service" "$root/lib/systemd/system/outpost-agent.service"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable --now outpost-agent.service
	{{if .Upgrade}}echo "install.sh: outpost-agent upgraded; a running agent restarts into it by itself within a minute"{{else}}echo "install.sh: outpost-agent is running; it joins office {{.Office}} on first start"{{end}}
else
	echo "install.sh: installed under ${root:-/}; start /usr/bin/outpost-agent --config /etc/outpost/agent.yaml"
fi
`))
