package installer

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// agentFile is the part of the agent's configuration an installer writes,
// with the agent's keys.
type agentFile struct {
	Coordinator   string `yaml:"coordinator"`
	EnrollToken   string `yaml:"enroll_token"`
	CAFingerprint string `yaml:"ca_fingerprint"`
	DataDir       string `yaml:"data_dir"`
	Root          string `yaml:"root"`
	PluginsDir    string `yaml:"plugins_dir"`
}

// What an installer carries comes from the coordinator's answer to the
// CLI. Whatever it says, Build refuses it with a message, or writes an
// agent.yaml the agent reads back to the same values (with a CA
// fingerprint the agent can pin) and an install.sh in which none of it
// is more than text in a comment or an echo.
func FuzzInstallerFiles(f *testing.F) {
	fp := "sha256:" + strings.Repeat("ab", 32)
	f.Add("berlin", "outpost.example.org:8027", fp, "opt_secret", "1.2.3")
	f.Add("b", "[::1]:8027", strings.ToUpper(fp), "opt_x", "v1.0.0-rc1")
	f.Add("berlin", "c:1\n# x", fp, "opt_x", "dev")
	f.Add("berlin", "c:1\rrm -rf /", fp, "opt_x: y\nroot: /etc", "1.0 beta")
	f.Add("berlin", "$(reboot):1", fp, "`id`", "0.0.301-dev+gf892ad1.dirty")
	// Found: CA fingerprints the agent cannot pin, which stopped every
	// computer the installer reached at its first start.
	f.Add("berlin", "c:1", "sha256:", "opt_x", "")
	f.Add("berlin", "c:1", "sha256:"+strings.Repeat("zz", 32), "opt_x", "9")
	f.Fuzz(func(t *testing.T, office, coordinator, fingerprint, token, version string) {
		cfg := Config{Office: office, Coordinator: coordinator, CAFingerprint: fingerprint, Token: token, BinDir: "/bin", OutDir: "/out", Version: version}
		if err := cfg.validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused without a message")
			}
			return
		}
		if _, err := tlsutil.NormalizeFingerprint(fingerprint); err != nil {
			t.Fatalf("accepted a CA fingerprint the agent refuses: %v", err)
		}
		yml, err := AgentYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got agentFile
		if err := config.Decode(yml, &got); err != nil {
			t.Fatalf("agent.yaml does not read back: %v\n%s", err, yml)
		}
		want := agentFile{Coordinator: coordinator, EnrollToken: token, CAFingerprint: fingerprint, DataDir: DataDir, Root: "/", PluginsDir: PluginsDir}
		if got != want {
			t.Fatalf("agent.yaml reads back %+v, want %+v\n%s", got, want, yml)
		}

		// install.sh has the template's lines, whatever the values.
		plain := Config{Office: "o", Coordinator: "c"}
		script, plainScript := string(render(installScript, cfg)), string(render(installScript, plain))
		lines, plainLines := strings.Split(script, "\n"), strings.Split(plainScript, "\n")
		if len(lines) != len(plainLines) {
			t.Fatalf("install.sh has %d lines, the template %d:\n%s", len(lines), len(plainLines), script)
		}
		for i, l := range lines {
			if l == plainLines[i] {
				continue
			}
			if !strings.HasPrefix(strings.TrimSpace(l), "#") && !strings.HasPrefix(strings.TrimSpace(l), "echo ") {
				t.Fatalf("install.sh line %d carries a value outside a comment or echo: %q", i+1, l)
			}
		}
		if v := debVersion(version); v != "0.0.0~dev" && !debVersionPattern.MatchString(v) {
			t.Fatalf("package version %q from %q", v, version)
		}
	})
}
