package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/installer"
	"github.com/outposthq/outpost/pkg/config"
)

// installerValues is the API's answer to POST /v1/offices/{name}/installer.
type installerValues struct {
	Office        string `json:"office"`
	Coordinator   string `json:"coordinator"`
	CAFingerprint string `json:"ca_fingerprint"`
	Token         string `json:"token"`
	TokenID       string `json:"token_id"`
	Expires       stamp  `json:"expires"`
	Uses          int    `json:"uses"`
}

func installerCommands() []*command {
	return []*command{
		{
			name: "installer build", maxArgs: 0,
			summary: "build an office's agent installer: binaries, agent.yaml, systemd unit, install.sh and a .deb",
			timeout: 5 * time.Minute,
			help: `Asks the coordinator for a fresh multi-use, expiring agent token of the office,
its public address and its CA fingerprint, and writes into --out:

  outpost-agent, plugins/outpost-plugin-*   taken from --bin
  agent.yaml               coordinator, ca_fingerprint, enroll_token, data_dir,
                           root and plugins_dir (mode 0600: it holds the token)
  outpost-agent.service    the systemd unit
  install.sh               installs and starts the agent (DESTDIR=ROOT for a
                           temporary root)
  outpost-agent_*.deb      the same as a Debian package: /usr/bin,
                           /usr/lib/outpost/plugins, /etc/outpost/agent.yaml
                           (a config file), /lib/systemd/system

A computer that installs it enrols into the office on first start (or into
the office it was added to by name, see 'office add-computer'). Hand the
directory only to that office's computers: anyone holding the token can
enrol until it expires or its uses run out. --bin defaults to the directory
of this outpost binary, where 'make build' puts the agent and the plugins.

--upgrade builds the same without a token, for computers enrolled already:
push its .deb as an artifact and name it in a policy (package outpost-agent,
the version the .deb has), and each agent installs it and restarts into
the new version by itself (README: Upgrading Outpost). Without a token it
can be stored and handed around like any artifact.

Examples:
  outpost installer build --office berlin
  outpost installer build --office berlin --out /srv/installers/berlin --uses 250 --ttl 720h
  outpost installer build --office berlin --upgrade --out /srv/installers/upgrade-1.6.0
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "`NAME` of the office the computers join (required)")
				out := fs.String("out", "", "`DIR` to write, new or empty (default ./outpost-installer-OFFICE)")
				bin := fs.String("bin", "", "`DIR` of outpost-agent and the outpost-plugin-* binaries (default: this binary's directory)")
				uses := config.Int(fs, "uses", 100, "how many computers (`N`) may enrol with the installer's token")
				ttl := newTTLFlag(fs, "ttl", 7*24*time.Hour, "how long the installer's token stays valid, a `DURATION` such as 720h or 30d")
				upgrade := fs.Bool("upgrade", false, "no token: a package that upgrades computers enrolled already")
				return func(ctx context.Context, e *env, args []string) error {
					set := map[string]bool{}
					fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
					switch {
					case *officeName == "":
						return usagef("missing --office NAME")
					case *upgrade && (set["uses"] || set["ttl"]):
						return usagef("--upgrade makes no token: --uses and --ttl do not apply")
					case *uses < 1:
						return usagef("--uses %d: want 1 or more", *uses)
					case *ttl <= 0:
						return usagef("--ttl %s: want a positive duration such as 72h or 3d", *ttl)
					}
					if *out == "" {
						*out = "outpost-installer-" + *officeName
					}
					if *bin == "" {
						exe, err := os.Executable()
						if err != nil {
							return fmt.Errorf("find this binary's directory: %w; pass --bin DIR", err)
						}
						if exe, err = filepath.EvalSymlinks(exe); err != nil {
							return fmt.Errorf("find this binary's directory: %w; pass --bin DIR", err)
						}
						*bin = filepath.Dir(exe)
					}
					// Check the binaries and --out before a token is made for nothing.
					if _, err := os.Stat(filepath.Join(*bin, "outpost-agent")); err != nil {
						return fmt.Errorf("no outpost-agent in %s: pass --bin with the directory of outpost-agent and the outpost-plugin-* binaries (make build puts them in ./bin)", *bin)
					}
					if err := installer.CheckOutDir(*out); err != nil {
						return err
					}
					body := map[string]any{"uses": *uses, "ttl": shortDuration(*ttl)}
					if *upgrade {
						body = map[string]any{"upgrade": true}
					}
					raw, err := e.api.send(ctx, http.MethodPost, officePath(*officeName)+"/installer", body)
					if err != nil {
						return err
					}
					var v installerValues
					if err := decode(raw, "installer", &v); err != nil {
						return err
					}
					res, err := installer.Build(installer.Config{Office: v.Office, Coordinator: v.Coordinator, CAFingerprint: v.CAFingerprint,
						Token: v.Token, Upgrade: *upgrade, BinDir: *bin, OutDir: *out, Version: Version})
					if err != nil {
						if *upgrade {
							return err
						}
						return fmt.Errorf("%w (token %s was made for it; it expires unused, or see outpost token list --office %s)", err, v.TokenID, v.Office)
					}
					if e.json {
						out := map[string]any{"office": v.Office, "coordinator": v.Coordinator, "ca_fingerprint": v.CAFingerprint,
							"token_id": v.TokenID, "expires": v.Expires.Time, "uses": v.Uses, "dir": res.Dir, "deb": res.Deb,
							"arch": res.Arch, "plugins": res.Plugins, "files": res.Files, "version": res.Version}
						if *upgrade {
							out["upgrade"] = true
							delete(out, "token_id")
							delete(out, "expires")
							delete(out, "uses")
						}
						return writeJSONValue(e.stdout, out)
					}
					if *upgrade {
						fmt.Fprintf(e.stdout, "upgrade package %s %s in %s\n", installer.PackageName, res.Version, res.Dir)
						fmt.Fprintf(e.stdout, "  coordinator %s, CA %s; no enrolment token: for computers enrolled already\n", v.Coordinator, v.CAFingerprint)
						for _, f := range res.Files {
							fmt.Fprintf(e.stdout, "  %s\n", f)
						}
						_, err = fmt.Fprintf(e.stdout, "roll it out: outpost artifact push %s, then name it in a policy:\n"+
							"  - {kind: package, name: %s, version: %q, artifact: <its sha256>}\n"+
							"follow it: agents report version %s (outpost agent search --not-version %s)\n",
							res.Deb, installer.PackageName, res.Version, Version, Version)
						return err
					}
					fmt.Fprintf(e.stdout, "installer for office %s in %s\n", v.Office, res.Dir)
					fmt.Fprintf(e.stdout, "  coordinator %s, CA %s\n", v.Coordinator, v.CAFingerprint)
					fmt.Fprintf(e.stdout, "  token %s: %s, expires %s (%s)\n", v.TokenID, plural(v.Uses, "use"), v.Expires.Format(time.RFC3339), until(e.now(), v.Expires.Time))
					for _, f := range res.Files {
						fmt.Fprintf(e.stdout, "  %s\n", f)
					}
					if len(res.Plugins) == 0 {
						fmt.Fprintf(e.stderr, "warning: no outpost-plugin-* binaries in %s: the agents will enrol but cannot apply policy items\n", *bin)
					}
					warnLoopback(e, v.Coordinator)
					_, err = fmt.Fprintf(e.stdout, "install on a computer of the office: sudo apt install ./%s  (or: sudo sh install.sh)\n", filepath.Base(res.Deb))
					return err
				}
			},
		},
	}
}

// warnLoopback tells the admin when the address an installer carries
// reaches only the coordinator's own machine: a coordinator bound to
// loopback gives that as its public address, and the computers of an
// office would never enrol.
func warnLoopback(e *env, coordinator string) {
	host, _, err := net.SplitHostPort(coordinator)
	if err != nil {
		return
	}
	ip, _ := netip.ParseAddr(host)
	if !ip.IsLoopback() && !strings.EqualFold(host, "localhost") {
		return
	}
	fmt.Fprintf(e.stderr, "warning: the coordinator's public address %s is a loopback address: only its own machine can enrol with this installer; "+
		"set public_address in the coordinator's configuration (OUTPOST_COORDINATOR_PUBLIC_ADDRESS) to the host:port computers reach it at, and build the installer again\n", coordinator)
}
