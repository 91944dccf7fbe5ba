package session

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

var allRights = []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_CONTROL, wire.Right_RIGHT_COMMAND, wire.Right_RIGHT_FILES, wire.Right_RIGHT_MANAGE}

// reference is the rule as a person states it, one right at a time: the
// right is granted when some applicable allow entry names the user or one
// of its groups with it, and no applicable deny entry does.
func reference(lists []*wire.HostPermissions, host, user string, groups []string) map[wire.Right]bool {
	out := map[wire.Right]bool{}
	for _, right := range allRights {
		allowed, denied := false, false
		for _, l := range lists {
			applies := l.GetHost() == "" || l.GetHost() == host
			for _, g := range l.GetGrants() {
				names := g.GetSubject() == "user:"+user
				for _, grp := range groups {
					names = names || g.GetSubject() == "group:"+grp
				}
				if !applies || !names || !slices.Contains(g.GetRights(), right) {
					continue
				}
				if g.GetDeny() {
					denied = true
				} else {
					allowed = true
				}
			}
		}
		if allowed && !denied {
			out[right] = true
		}
	}
	return out
}

func randomLists(r *rand.Rand) []*wire.HostPermissions {
	subjects := []string{"user:tina", "user:tom", "group:berlin", "group:paris", "group:all", "user:admin"}
	hosts := []string{"", "", "ag-1", "ag-2"}
	var lists []*wire.HostPermissions
	for range r.IntN(4) {
		l := &wire.HostPermissions{Host: hosts[r.IntN(len(hosts))]}
		for range r.IntN(6) {
			g := &wire.Grant{Subject: subjects[r.IntN(len(subjects))], Deny: r.IntN(4) == 0}
			for _, right := range allRights {
				if r.IntN(3) == 0 {
					g.Rights = append(g.Rights, right)
				}
			}
			l.Grants = append(l.Grants, g)
		}
		lists = append(lists, l)
	}
	return lists
}

func TestDecideMatchesReferenceModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 2026))
	users := []string{"tina", "tom", "eve"}
	groupSets := [][]string{nil, {"berlin"}, {"paris", "all"}, {"berlin", "paris"}}
	hosts := []string{"ag-1", "ag-2", "ag-3"}
	nonEmpty := 0
	for i := range 20000 {
		lists := randomLists(r)
		host, user, groups := hosts[r.IntN(len(hosts))], users[r.IntN(len(users))], groupSets[r.IntN(len(groupSets))]
		got, want := Decide(lists, host, user, groups), reference(lists, host, user, groups)
		if len(got) > 0 {
			nonEmpty++
		}
		for _, right := range allRights {
			if got[right] != want[right] {
				t.Fatalf("case %d: %s %v on %s, right %v: Decide %v, model %v\nlists: %v", i, user, groups, host, right, got[right], want[right], lists)
			}
		}
	}
	// The generator must exercise both outcomes, or the test proves nothing.
	if nonEmpty < 2000 || nonEmpty > 18000 {
		t.Fatalf("%d of 20000 random cases granted something: the generator is lopsided", nonEmpty)
	}
}

func TestDecideExamples(t *testing.T) {
	office := &wire.HostPermissions{Grants: []*wire.Grant{
		{Subject: "group:berlin", Rights: []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_COMMAND}},
	}}
	host := &wire.HostPermissions{Host: "ag-ceo", Grants: []*wire.Grant{
		{Subject: "group:berlin", Rights: []wire.Right{wire.Right_RIGHT_COMMAND}, Deny: true},
		{Subject: "user:tina", Rights: []wire.Right{wire.Right_RIGHT_FILES}},
	}}
	lists := []*wire.HostPermissions{office, host}
	for _, tc := range []struct {
		name, host, user string
		groups           []string
		want             []wire.Right
	}{
		{"group member on an ordinary host", "ag-1", "tom", []string{"berlin"}, []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_COMMAND}},
		{"deny on one host wins over the office allow", "ag-ceo", "tom", []string{"berlin"}, []wire.Right{wire.Right_RIGHT_VIEW}},
		{"user grant adds to the group's", "ag-ceo", "tina", []string{"berlin"}, []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_FILES}},
		{"not in the group", "ag-1", "eve", []string{"paris"}, nil},
		{"host list does not leak to other hosts", "ag-1", "tina", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(lists, tc.host, tc.user, tc.groups).List()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("rights %v, want %v", got, tc.want)
			}
		})
	}
}
