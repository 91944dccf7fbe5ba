package packages

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/proto"
)

// A package item whose artifact is named *.deb is installed through dpkg.
// dpkg acts on the whole system, so it is used only when the plugin's root
// is "/"; in any other root such an item is not applicable (and says so),
// never installed somewhere it does not belong.

// WithDpkgDir makes the plugin run dpkg and dpkg-query from dir rather
// than from $PATH.
func WithDpkgDir(dir string) Option { return func(m *Manager) { m.dpkgDir = dir } }

// dpkgTimeout bounds one dpkg call.
const dpkgTimeout = 10 * time.Minute

func isDeb(item *wire.Item) bool {
	return strings.HasSuffix(strings.ToLower(item.GetArtifact().GetName()), ".deb")
}

func debNotApplicable(root string) string {
	return fmt.Sprintf("not applicable: a .deb installs through dpkg onto the whole system, and this agent's root is %s, not /", root)
}

func (m *Manager) dpkg(ctx context.Context, name string, args ...string) (string, error) {
	if m.dpkgDir != "" {
		name = filepath.Join(m.dpkgDir, name)
	}
	ctx, cancel := context.WithTimeout(ctx, dpkgTimeout)
	defer cancel()
	// What dpkg prints includes what the maintainer scripts of the .deb
	// print: like a hook's, only its end is kept.
	out := &tailBuffer{max: maxHookOutput}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(cmd.Environ(), "DEBIAN_FRONTEND=noninteractive")
	// A maintainer script may start a process that keeps dpkg's output
	// open (a service started with "daemon &"): what it says once dpkg
	// has exited is not waited for beyond outputWait, and dpkg's exit
	// status decides.
	cmd.WaitDelay = outputWait
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // only returned when dpkg itself succeeded
	}
	said := out.String()
	if err != nil {
		if ctx.Err() != nil {
			return said, fmt.Errorf("%s %s timed out after %s", filepath.Base(name), strings.Join(args, " "), dpkgTimeout)
		}
		return said, fmt.Errorf("%s %s failed (%v): %s", filepath.Base(name), strings.Join(args, " "), err, said)
	}
	return said, nil
}

// debFields returns the package name and version a .deb's control file
// gives, through dpkg's front end to dpkg-deb.
func (m *Manager) debFields(ctx context.Context, path string) (pkg, version string, err error) {
	out, err := m.dpkg(ctx, "dpkg", "--field", path, "Package", "Version")
	if err != nil {
		return "", "", fmt.Errorf("read the control fields of the .deb: %w", err)
	}
	for line := range strings.Lines(out) {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Package":
			pkg = strings.TrimSpace(v)
		case "Version":
			version = strings.TrimSpace(v)
		}
	}
	if pkg == "" || version == "" {
		return "", "", fmt.Errorf("the .deb names no package or version in its control file (dpkg --field said %q)", out)
	}
	return pkg, version, nil
}

// debVersion returns the installed version of a Debian package, or "".
func (m *Manager) debVersion(ctx context.Context, name string) string {
	out, err := m.dpkg(ctx, "dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name)
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(out, " ")
	if status != "installed" {
		return ""
	}
	return version
}

func (m *Manager) scanDeb(ctx context.Context, root string, s spec) *proto.ItemState {
	st := &proto.ItemState{Id: s.id}
	if root != "/" {
		st.Message = debNotApplicable(root)
		return st
	}
	st.Applicable = true
	have := m.debVersion(ctx, s.name)
	st.InstalledVersion = have
	switch {
	case s.state == wire.State_STATE_ABSENT && have == "":
		st.Compliant, st.Message = true, fmt.Sprintf("%s is not installed (dpkg)", s.name)
	case s.state == wire.State_STATE_ABSENT:
		st.Message = fmt.Sprintf("%s %s is installed (dpkg); want it absent", s.name, have)
	case have == s.version:
		st.Compliant, st.Message = true, fmt.Sprintf("%s %s is installed (dpkg)", s.name, have)
	case have == "":
		st.Message = fmt.Sprintf("%s is not installed (dpkg)", s.name)
	default:
		st.Message = fmt.Sprintf("installed version %s (dpkg), want %s", have, s.version)
	}
	return st
}

func (m *Manager) applyDeb(ctx context.Context, root string, s spec, artifactPath string) (*proto.ApplyResponse, error) {
	if root != "/" {
		return nil, fmt.Errorf("%s", debNotApplicable(root))
	}
	have := m.debVersion(ctx, s.name)
	if s.state == wire.State_STATE_ABSENT {
		if have == "" {
			return &proto.ApplyResponse{Message: fmt.Sprintf("%s is not installed (dpkg)", s.name)}, nil
		}
		if _, err := m.dpkg(ctx, "dpkg", "--remove", s.name); err != nil {
			return nil, fmt.Errorf("remove %s: %w", s.name, err)
		}
		return &proto.ApplyResponse{Changed: true, Message: fmt.Sprintf("removed %s %s with dpkg", s.name, have)}, nil
	}
	if have == s.version {
		return &proto.ApplyResponse{Message: fmt.Sprintf("%s %s is installed (dpkg)", s.name, have)}, nil
	}
	if artifactPath == "" {
		return nil, fmt.Errorf("no artifact_path given; the agent must fetch the .deb before installing")
	}
	// dpkg installs whatever the .deb holds, a downgrade or another
	// package included: what it holds is checked before it runs.
	pkg, version, err := m.debFields(ctx, artifactPath)
	if err != nil {
		return nil, fmt.Errorf("install %s %s: %w", s.name, s.version, err)
	}
	if pkg != s.name || version != s.version {
		return nil, plugins.Refusal(fmt.Sprintf("install %s %s: the .deb holds %s %s, not %s %s; nothing was installed (name the .deb of that version in the policy)",
			s.name, s.version, pkg, version, s.name, s.version))
	}
	if _, err := m.dpkg(ctx, "dpkg", "--force-confdef", "--force-confold", "--install", artifactPath); err != nil {
		return nil, fmt.Errorf("install %s %s: %w", s.name, s.version, err)
	}
	if got := m.debVersion(ctx, s.name); got != s.version {
		return nil, fmt.Errorf("dpkg installed %s but it reports version %q, not %s: the .deb does not hold the version the policy names", s.name, got, s.version)
	}
	msg := fmt.Sprintf("installed %s %s with dpkg", s.name, s.version)
	if have != "" {
		msg = fmt.Sprintf("replaced %s %s with %s (dpkg)", s.name, have, s.version)
	}
	return &proto.ApplyResponse{Changed: true, Message: msg}, nil
}
