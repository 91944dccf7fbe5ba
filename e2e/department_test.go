package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// TestDepartmentInstallers is the department-installer scenario: three
// departments, each an office whose permission list allows only its own
// group, each with a host installed from its office's installer; ten
// technicians. Access then changes only by group membership: no host and
// no permission list is touched again.
func TestDepartmentInstallers(t *testing.T) {
	c := coordinatortest.New(t)
	depts := []string{"finance", "lab", "sales"}
	hosts := map[string]*testAgent{}
	for i, d := range depts {
		c.CreateOffice(d, nil)
		c.MustDo("POST", "/v1/groups", map[string]any{"name": d + "-techs"}, nil)
		setOfficePerms(t, c, d, map[string]any{"subject": "group:" + d + "-techs", "rights": []string{"view", "command"}})
		var inst struct{ Token string }
		c.MustDo("POST", "/v1/offices/"+d+"/installer", map[string]any{}, &inst)
		hosts[d] = startAgent(t, c, inst.Token, "pc-"+d, fmt.Sprintf("127.0.0.%d", 51+i))
	}
	// Ten technicians: four in finance, three in lab, three in sales.
	member := map[string]string{}
	var techs []*technician
	for i := range 10 {
		name := fmt.Sprintf("tech%d", i)
		dept := depts[min(i/4, 2)]
		if i >= 7 {
			dept = "sales"
		} else if i >= 4 {
			dept = "lab"
		}
		techs = append(techs, newTechnician(t, c, name))
		c.MustDo("PATCH", "/v1/groups/"+dept+"-techs", map[string]any{"add": []string{name}}, nil)
		member[name] = dept
	}
	for _, d := range depts {
		var p struct{ Revision uint64 }
		c.MustDo("GET", "/v1/offices/"+d+"/policy", nil, &p)
		waitRevision(t, hosts[d], p.Revision)
	}
	check := func(stage string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan string, 64)
		for _, tc := range techs {
			tc.login()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, d := range depts {
					r := tc.run("", "exec", "pc-"+d, "--", "/bin/sh", "-c", "echo in-"+d)
					allowed := member[tc.name] == d
					switch {
					case allowed && (r.code != 0 || !strings.Contains(r.stdout, "in-"+d)):
						errs <- fmt.Sprintf("%s: %s (in %s) refused on pc-%s: %v", stage, tc.name, member[tc.name], d, r)
					case !allowed && r.code == 0:
						errs <- fmt.Sprintf("%s: %s (in %s) let into pc-%s: %v", stage, tc.name, member[tc.name], d, r)
					case !allowed && !strings.Contains(r.stderr, "no host you may reach is called"):
						errs <- fmt.Sprintf("%s: %s refused on pc-%s for the wrong reason: %v", stage, tc.name, d, r)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	check("initial")

	revisions := map[string]uint64{}
	for _, d := range depts {
		revisions[d] = hosts[d].a.Revision()
	}
	// tech3 moves from finance to lab; tech9 leaves sales altogether.
	c.MustDo("PATCH", "/v1/groups/finance-techs", map[string]any{"remove": []string{"tech3"}}, nil)
	c.MustDo("PATCH", "/v1/groups/lab-techs", map[string]any{"add": []string{"tech3"}}, nil)
	c.MustDo("PATCH", "/v1/groups/sales-techs", map[string]any{"remove": []string{"tech9"}}, nil)
	member["tech3"], member["tech9"] = "lab", "none"
	check("after group changes")
	for _, d := range depts {
		if got := hosts[d].a.Revision(); got != revisions[d] {
			t.Fatalf("pc-%s went from revision %d to %d: group changes must not need new policy", d, revisions[d], got)
		}
	}
}

// TestMissedRevocationLearnedAtCheckin: a host that was offline when a user
// was disabled learns it at its next check-in, before any session.
func TestMissedRevocationLearnedAtCheckin(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	pc := startAgent(t, c, c.EnrollToken("berlin", "agent", 1), "pc-offline", "127.0.0.61")
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "techs"}, nil)
	tina := newTechnician(t, c, "tina")
	c.MustDo("PATCH", "/v1/groups/techs", map[string]any{"add": []string{"tina"}}, nil)
	waitRevision(t, pc, setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:techs", "rights": []string{"command"}}))
	tina.login()
	if r := tina.run("", "exec", "pc-offline", "--", "true"); r.code != 0 {
		t.Fatalf("before: %v", r)
	}
	pc.stop()
	c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
	revPath := filepath.Join(pc.cfg.DataDir, "sessions", "revocations.signed.pb")
	if disabledOn(t, revPath, "tina") {
		t.Fatal("the stopped host already knows: the test proves nothing")
	}
	pc.start()
	testutil.Eventually(t, 20*time.Second, func() bool { return disabledOn(t, revPath, "tina") },
		"the host did not learn of the disabled user at check-in")
}

// disabledOn says whether the host's saved revocation list has user disabled.
func disabledOn(t testing.TB, path, user string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var sr wire.SignedRevocations
	var l wire.RevocationList
	if err := proto.Unmarshal(b, &sr); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(sr.GetList(), &l); err != nil {
		t.Fatal(err)
	}
	return l.Revoked(&wire.AccessToken{User: user, IssuedUnixMs: time.Now().UnixMilli()})
}
