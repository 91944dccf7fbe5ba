package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// An installer whose coordinator address is loopback enrols nothing but
// the coordinator's own machine: the admin is told, with the setting that
// changes it, while the installer is still built (a lab on one machine
// wants exactly that).
func TestInstallerWarnsOfALoopbackCoordinator(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool
	}{
		{"127.0.0.1:8027", true},
		{"[::1]:8027", true},
		{"localhost:8027", true},
		{"outpost.example.org:8027", false},
		{"10.0.0.5:8027", false},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			answer := strings.Replace(installerAnswer, `"outpost.example.org:8027"`, `"`+tt.addr+`"`, 1)
			f := newFakeAPI(t, exchange{method: "POST", target: "/v1/offices/berlin/installer", body: `{"uses":100,"ttl":"168h"}`, status: 201, answer: answer})
			res := run(t, f, "installer", "build", "--office", "berlin", "--out", filepath.Join(t.TempDir(), "out"), "--bin", binDir(t, true))
			if res.code != 0 {
				t.Fatalf("installer build: %+v", res)
			}
			warned := strings.Contains(res.stderr, "warning: the coordinator's public address "+tt.addr+" is a loopback address") &&
				strings.Contains(res.stderr, "OUTPOST_COORDINATOR_PUBLIC_ADDRESS")
			if warned != tt.warn {
				t.Fatalf("warned %v, want %v: %+v", warned, tt.warn, res)
			}
		})
	}
}
