package packages

import (
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/outposthq/outpost/pkg/wire"
)

// Kind is the item kind this plugin manages.
const Kind = "package"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)

// checkName accepts names that are safe as file names on every system.
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("package name %q is invalid: want 1 to 64 of a-z 0-9 . _ + -, starting with a letter or digit", name)
	}
	return nil
}

func checkVersion(v string) error {
	if v == "" {
		return fmt.Errorf("package version is empty")
	}
	if len(v) > 128 || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
		return fmt.Errorf("package version %q is invalid: want up to 128 printable characters without spaces", v)
	}
	return nil
}

// checkPrefix accepts an absolute, clean path below the root that does not
// overlap the plugin's own state directory.
func checkPrefix(prefix string) error {
	switch {
	case !strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("prefix %q is not absolute", prefix)
	case path.Clean(prefix) != prefix || strings.Contains(prefix, `\`):
		return fmt.Errorf("prefix %q is not clean (want e.g. /opt/hello)", prefix)
	case prefix == "/":
		return fmt.Errorf("prefix / is the whole root; install under a directory such as /opt/<name>")
	case len(prefix) > 1024:
		return fmt.Errorf("prefix of %d bytes is too long", len(prefix))
	}
	state := "/" + StateDir
	if prefix == state || strings.HasPrefix(prefix, state+"/") || strings.HasPrefix(state, prefix+"/") {
		return fmt.Errorf("prefix %s overlaps the plugin's state directory %s", prefix, state)
	}
	return nil
}

// pluginsState is where, under the root, the plugins keep their state:
// this plugin's StateDir, and the patch and registry plugins' beside it.
const pluginsState = "/var/lib/outpost"

// checkPrefixOutsideState refuses a prefix that overlaps the state of any
// plugin: a package's files would overwrite the journals and backups kept
// there, and go with the package. (A manifest is only held to
// checkPrefix, so that a package installed there before this check still
// loads, and can be removed.)
func checkPrefixOutsideState(prefix string) error {
	if prefix == pluginsState || strings.HasPrefix(prefix, pluginsState+"/") || strings.HasPrefix(pluginsState, prefix+"/") {
		return fmt.Errorf("prefix %s overlaps %s, where the plugins keep their state; install under a directory such as /opt/<name>", prefix, pluginsState)
	}
	return nil
}

// spec is a validated package item.
type spec struct {
	id      string
	name    string
	version string
	prefix  string // absolute within the root
	sha256  string // wanted artifact, lower-case hex; may be empty
	size    int64  // wanted artifact size; 0 if unknown
	state   wire.State
}

func (s spec) prefixRel() string { return strings.TrimPrefix(s.prefix, "/") }

// itemSpec validates a package item.
func itemSpec(item *wire.Item) (spec, error) {
	if item == nil {
		return spec{}, fmt.Errorf("no item given")
	}
	if item.GetKind() != Kind {
		return spec{}, fmt.Errorf("item %s has kind %q; this plugin manages %q", item.GetId(), item.GetKind(), Kind)
	}
	p := item.GetPackage()
	if p == nil {
		return spec{}, fmt.Errorf("item %s has no package spec", item.GetId())
	}
	s := spec{id: item.GetId(), name: p.GetName(), version: p.GetVersion(), prefix: p.GetPrefix(), state: item.GetState()}
	if err := checkName(s.name); err != nil {
		return spec{}, err
	}
	if s.prefix == "" {
		s.prefix = "/opt/" + s.name
	}
	if err := checkPrefix(s.prefix); err != nil {
		return spec{}, err
	}
	if err := checkPrefixOutsideState(s.prefix); err != nil {
		return spec{}, err
	}
	switch s.state {
	case wire.State_STATE_PRESENT:
		if err := checkVersion(s.version); err != nil {
			return spec{}, err
		}
	case wire.State_STATE_ABSENT:
	default:
		return spec{}, fmt.Errorf("item %s has state %s; want PRESENT or ABSENT", item.GetId(), s.state)
	}
	if a := item.GetArtifact(); a != nil {
		s.sha256, s.size = strings.ToLower(a.GetSha256()), a.GetSize()
		if b, err := hex.DecodeString(s.sha256); s.sha256 != "" && (err != nil || len(b) != 32) {
			return spec{}, fmt.Errorf("item %s: artifact sha256 %q is not 64 hex digits", item.GetId(), a.GetSha256())
		}
	}
	return s, nil
}
