package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// addrs is a host's network, as the test moves it around.
type addrs struct {
	mu sync.Mutex
	a  []string
}

func (x *addrs) set(a ...string) { x.mu.Lock(); x.a = a; x.mu.Unlock() }
func (x *addrs) get() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.a...)
}

func TestLaptopMovesBetweenOfficesAndRoams(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("berlin", map[string]any{"subnets": []string{"10.1.0.0/16"}})
	c.CreateOffice("paris", map[string]any{"subnets": []string{"10.2.0.0/16"}})

	// Overlapping ranges are refused, naming the office that owns them.
	code, msg := c.Do("POST", "/v1/offices", map[string]any{"name": "lab", "subnets": []string{"10.1.7.0/24"}}, nil)
	if code != 409 || !strings.Contains(msg, "berlin") {
		t.Fatalf("overlapping office: %d %q", code, msg)
	}
	code, msg = c.Do("PATCH", "/v1/offices/paris", map[string]any{"subnets": []string{"10.0.0.0/8"}}, nil)
	if code != 409 || !strings.Contains(msg, "berlin") {
		t.Fatalf("overlapping edit: %d %q", code, msg)
	}

	// Paris has a relay; a desktop lives there for company in its gossip.
	r, _ := startRelay(t, c, c.EnrollToken("paris", "relay", 1))
	c.MustDo("PATCH", "/v1/offices/paris", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(t, c, "paris", r.Addr())
	desk := &addrs{a: []string{"10.2.0.10"}}
	startAgent(t, c, c.EnrollToken("paris", "agent", 1), "paris-desk", "127.0.0.31", agent.WithAddresses(desk.get))

	pkg, err := os.ReadFile(filepath.Join(tu.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sha := c.Upload("hello-1.0.0.tar.gz", pkg)
	berlinRev := c.Apply("berlin", packageYAML(sha, "absent"))
	parisRev := c.Apply("paris", packageYAML(sha, "present"))

	net := &addrs{a: []string{"10.1.4.20"}}
	laptop := startAgent(t, c, c.EnrollToken("berlin", "agent", 1), "laptop", "127.0.0.30", agent.WithAddresses(net.get))
	where := func(office string, roaming bool, rev uint64) func() bool {
		return func() bool {
			o, r := laptop.a.Office()
			return o == office && r == roaming && laptop.a.Revision() == rev
		}
	}
	tu.Eventually(t, 30*time.Second, where("berlin", false, berlinRev), "laptop in berlin")

	// It leaves every office's range: roaming, still on berlin's policy,
	// no gossip, content straight from the file server.
	net.set("192.168.1.50")
	tu.Eventually(t, 30*time.Second, where("berlin", true, berlinRev), "laptop roaming")
	tu.Eventually(t, 10*time.Second, func() bool { return len(laptop.a.GossipPeers()) == 0 }, "roaming laptop still gossips")
	berlinRev = c.Apply("berlin", packageYAML(sha, "present"))
	tu.Eventually(t, 30*time.Second, func() bool { return exists(laptop.path("opt/hello/bin/hello")) && laptop.a.Revision() == berlinRev },
		"roaming laptop did not install berlin's new policy from the file server")

	// It says it is in paris, but the coordinator sees it connect from
	// somewhere paris does not list: a claim alone moves it into no
	// office but its own (joining paris would give it paris's gossip key).
	net.set("10.2.3.4")
	var claimed struct {
		Office    string   `json:"office"`
		Roaming   bool     `json:"roaming"`
		Addresses []string `json:"addresses"`
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents/"+laptop.a.ID(), nil, &claimed)
		return strings.Join(claimed.Addresses, ",") == "10.2.3.4"
	}, "the laptop's new address never reached the coordinator: %+v", claimed)
	if claimed.Office != "berlin" || !claimed.Roaming {
		t.Fatalf("a reported address alone placed the laptop: %+v", claimed)
	}
	if o, r := laptop.a.Office(); o != "berlin" || !r {
		t.Fatalf("the laptop runs as %s (roaming %v), want berlin, roaming", o, r)
	}

	// Paris lists the address its computers reach the coordinator from
	// (its NAT; here, loopback): the laptop walks in. Paris's policy,
	// paris's gossip.
	if code, msg := c.Do("PATCH", "/v1/offices/paris", map[string]any{"egress": []string{"nat.example.org"}}, nil); code != 400 || !strings.Contains(msg, "egress") {
		t.Fatalf("egress by name: %d %q", code, msg)
	}
	c.MustDo("PATCH", "/v1/offices/paris", map[string]any{"egress": []string{"127.0.0.0/8"}}, nil)
	tu.Eventually(t, 30*time.Second, where("paris", false, parisRev), "laptop in paris")
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, p := range laptop.a.GossipPeers() {
			if p.Meta.Role == "agent" {
				return true
			}
		}
		return false
	}, "laptop did not join paris's gossip: %+v", laptop.a.GossipPeers())
	var shown struct {
		Office  string `json:"office"`
		Roaming bool   `json:"roaming"`
	}
	c.MustDo("GET", "/v1/agents/"+laptop.a.ID(), nil, &shown)
	if shown.Office != "paris" || shown.Roaming {
		t.Fatalf("API shows %+v", shown)
	}

	// Moved by hand to an office that does not exist: a clear error.
	code, msg = c.Do("POST", "/v1/agents/"+laptop.a.ID()+"/move", map[string]any{"office": "rome"}, nil)
	if code != 404 || !strings.Contains(msg, "rome") {
		t.Fatalf("move to unknown office: %d %q", code, msg)
	}

	// Moved by hand, off every range, to an office that has no policy yet:
	// the office gets its first revision, which asks nothing, and the
	// laptop runs it instead of paris's.
	c.CreateOffice("hamburg", nil)
	net.set("192.168.7.7")
	// Once the coordinator has heard the new address: a check-in still
	// carrying paris's would place the laptop back in paris, as it should,
	// after the move (CI saw that race once).
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents/"+laptop.a.ID(), nil, &claimed)
		return strings.Join(claimed.Addresses, ",") == "192.168.7.7"
	}, "the laptop's new address never reached the coordinator: %+v", claimed)
	var moved struct {
		Office string `json:"office"`
	}
	c.MustDo("POST", "/v1/agents/"+laptop.a.ID()+"/move", map[string]any{"office": "hamburg"}, &moved)
	var hamburg struct {
		Revision uint64 `json:"revision"`
	}
	c.MustDo("GET", "/v1/offices/hamburg", nil, &hamburg)
	if moved.Office != "hamburg" || hamburg.Revision == 0 {
		t.Fatalf("moved to %q; hamburg is at revision %d", moved.Office, hamburg.Revision)
	}
	tu.Eventually(t, 30*time.Second, where("hamburg", false, hamburg.Revision), "laptop did not take hamburg's policy")
	var view struct {
		Revision  uint64            `json:"revision"`
		Compliant bool              `json:"compliant"`
		Items     []json.RawMessage `json:"items"`
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/agents/"+laptop.a.ID(), nil, &view)
		return view.Revision == hamburg.Revision && view.Compliant && len(view.Items) == 0
	}, "the API shows %+v, want revision %d, compliant, no items", view, hamburg.Revision)
}
