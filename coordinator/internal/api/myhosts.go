package api

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// GET /v1/me/hosts: the hosts where the signed-in user has rights, with
// the rights, so that a technician can find where to work without an API
// role. The rights are worked out as hosts work them out (the office's
// list and the host's own, the user and its groups, deny wins), from the
// lists as they are now: a host that has not taken the newest revision
// yet still goes by the one it holds.

type myHostView struct {
	ID        string    `json:"id"`
	Hostname  string    `json:"hostname"`
	Office    string    `json:"office"`
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen"`
	Rights    []string  `json:"rights"`
	// Shared: another host has the same hostname; name this one by id.
	Shared bool `json:"shared_hostname,omitempty"`
}

func (a *API) myHosts(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	p := PrincipalFrom(r.Context())
	q := r.URL.Query()
	office, match := q.Get("office"), strings.ToLower(strings.TrimSpace(q.Get("q")))
	if office != "" && hasListRole(r, true) {
		// To others an unknown office is one without hosts for them:
		// whether it exists is not theirs to learn.
		if _, err := a.d.Store.Office(office); err != nil {
			return err
		}
	}
	out := []myHostView{}
	if p == nil || p.User == "" {
		// Without users (no authorization server) nobody is on hosts;
		// with them the admin token is the user admin.
		writeJSON(w, http.StatusOK, map[string]any{"user": "", "hosts": out})
		return nil
	}
	names, err := a.d.Store.SubjectNames(p.User)
	if err != nil {
		return err
	}
	lists, err := a.d.Store.PermissionLists()
	if err != nil {
		return err
	}
	officeLists, hostLists := map[string][]store.Grant{}, map[string][]store.Grant{}
	for _, l := range lists {
		if l.Host != "" {
			hostLists[l.Host] = l.Grants
		} else {
			officeLists[l.Office] = l.Grants
		}
	}
	// Every office's, for the hostnames that more than one host has: a
	// session names its host across the whole fleet, in any case.
	members, err := a.d.Store.Members("")
	if err != nil {
		return err
	}
	byName := map[string]int{}
	for _, m := range members {
		if m.Role == "agent" {
			byName[strings.ToLower(m.Hostname)]++
		}
	}
	for _, m := range members {
		if m.Role != "agent" || (office != "" && m.Office != office) {
			continue
		}
		if match != "" && !strings.Contains(strings.ToLower(m.Hostname), match) && !strings.HasPrefix(m.ID, match) {
			continue
		}
		rights := store.GrantedRights(names, officeLists[m.Office], hostLists[m.ID])
		if len(rights) == 0 {
			continue
		}
		v := myHostView{ID: m.ID, Hostname: m.Hostname, Office: m.Office, LastSeen: m.LastSeen, Rights: rights, Shared: byName[strings.ToLower(m.Hostname)] > 1}
		if a.d.Presence != nil {
			v.Connected = a.d.Presence.Connected(m.ID)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Office != out[j].Office {
			return out[i].Office < out[j].Office
		}
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].ID < out[j].ID
	})
	writeJSON(w, http.StatusOK, map[string]any{"user": p.User, "hosts": out})
	return nil
}
