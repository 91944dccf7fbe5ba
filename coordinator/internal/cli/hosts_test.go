package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/wire"
)

// The item ids, which run long, get a table of their own so that they do
// not push the host's values away from their labels.
func TestPrintInventory(t *testing.T) {
	inv := &wire.Inventory{MemberId: "ag-0011223344556677", Hostname: "pc-7", Office: "berlin", Os: "linux", Arch: "amd64",
		Version: "v1.2.0", UptimeSeconds: 3600, SystemUptimeSeconds: 3 * 86400, Addresses: []string{"10.1.0.7"}, Revision: 4,
		Items: []*wire.InventoryItem{
			{Id: "registry:/etc/outpost/very/long/path/to/settings.ini[main]#name", Status: "compliant"},
			{Id: "package/hello", Status: "failed", Message: "download: checksum mismatch"},
		}}
	var b bytes.Buffer
	if err := printInventory(&b, inv); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"host:             pc-7 (ag-0011223344556677)\n" +
		"office:           berlin\n" +
		"system:           linux/amd64, up 72h; agent v1.2.0, running 1h\n" +
		"addresses:        10.1.0.7\n" +
		"policy revision:  4\n" +
		"  registry:/etc/outpost/very/long/path/to/settings.ini[main]#name  compliant\n" +
		"  package/hello                                                    failed download: checksum mismatch\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A host name the coordinator does not know is met with advice the user can
// follow: a technician cannot list agents.
func TestUnknownHostAdvice(t *testing.T) {
	c := coordinatortest.New(t)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "olga", "password": "olga-password-1", "role": "operator"}, nil)
	tests := []struct {
		user     string
		args     []string
		has      []string
		hasNot   string
		wantCode int
	}{
		{"tina", []string{"exec", "pc-nosuch", "--", "id"},
			[]string{`outpost: exec: no host you may reach is called "pc-nosuch": check the name`, "outpost hosts lists the hosts you may reach"}, "agent list", 1},
		{"tina", []string{"inventory", "pc-nosuch"},
			[]string{`outpost: inventory: no host you may reach is called "pc-nosuch": check the name`, "outpost hosts lists the hosts you may reach"}, "agent list", 1},
		{"olga", []string{"exec", "pc-nosuch", "--", "id"},
			[]string{`outpost: exec: no enrolled host is called "pc-nosuch": check the name, or find the host with outpost agent search TEXT`}, "outpost hosts lists", 1},
	}
	for _, tt := range tests {
		t.Run(tt.user+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			s := newSignedIn(t, c)
			if res := s.run(tt.user+"-password-1\n", "login", tt.user, "--password-stdin"); res.code != 0 {
				t.Fatalf("login: %+v", res)
			}
			res := s.run("", tt.args...)
			want{code: tt.wantCode, stderrHas: tt.has}.check(t, res)
			if strings.Contains(res.stderr, tt.hasNot) {
				t.Errorf("stderr has %q:\n%s", tt.hasNot, res.stderr)
			}
		})
	}
}

func TestExplainUnknownHost(t *testing.T) {
	two := `2 hosts are called "pc-7": name one by its member id: conflict`
	tests := []struct {
		name string
		end  *wire.SessionEnd
		role string
		want string
	}{
		{"ambiguous, technician", &wire.SessionEnd{Error: two, Reason: wire.SessionEnd_REASON_AMBIGUOUS_HOST}, "",
			`2 hosts are called "pc-7": name one by its member id (outpost hosts NAME shows their ids)`},
		{"ambiguous, admin", &wire.SessionEnd{Error: two, Reason: wire.SessionEnd_REASON_AMBIGUOUS_HOST}, "admin",
			`2 hosts are called "pc-7": name one by its member id (outpost agent search NAME shows them)`},
		// The reason decides, whatever the words.
		{"unknown, other words", &wire.SessionEnd{Error: `host "pc-9" is not enrolled: not found`, Reason: wire.SessionEnd_REASON_UNKNOWN_HOST}, "admin",
			`host "pc-9" is not enrolled: check the name, or find the host with outpost agent search TEXT or outpost agent list`},
		// A coordinator from before the reason: its words.
		{"older coordinator", &wire.SessionEnd{Error: two}, "",
			`2 hosts are called "pc-7": name one by its member id (outpost hosts NAME shows their ids)`},
	}
	for _, tt := range tests {
		if !unknownHost(tt.end) {
			t.Errorf("%s: unknownHost = false", tt.name)
		}
		if got := explainUnknownHost(tt.end, tt.role); got != tt.want {
			t.Errorf("%s: explainUnknownHost = %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, end := range []*wire.SessionEnd{
		{Error: "host pc-7 (ag-1) is not connected to the coordinator", Reason: wire.SessionEnd_REASON_HOST_OFFLINE},
		{Error: "host pc-7 (ag-1) is not connected to the coordinator"},
		{Error: `no enrolled host is called "x"`, Reason: wire.SessionEnd_REASON_HOST_OFFLINE},
	} {
		if unknownHost(end) {
			t.Errorf("%v is taken for an unknown host", end)
		}
	}
}
