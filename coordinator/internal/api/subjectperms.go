package api

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// What permission lists say about one user or group: deleting one takes
// its grants out of every list (else a user or group made later under the
// same name would inherit them), and GET /v1/users/{name}/permissions
// shows every grant that names a user or one of its groups.

// listView is a permission list that lost grants (DELETE of a user or a
// group).
type listView struct {
	// Scope names the list for people: "office hq", "host pc-7".
	Scope    string        `json:"scope"`
	Office   string        `json:"office,omitempty"`
	Host     string        `json:"host,omitempty"` // member id
	Hostname string        `json:"hostname,omitempty"`
	Grants   []store.Grant `json:"grants"` // the grants taken out
	// Revision is the office's policy revision that carries the list now.
	Revision uint64 `json:"revision,omitempty"`
}

type deletedView struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// RemovedFrom are the lists that held grants to it, with them.
	RemovedFrom []listView `json:"removed_from"`
}

func (a *API) deleteUserAndGrants(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	name := r.PathValue("name")
	if name == a.actor(r) {
		return httpError(http.StatusBadRequest, "you cannot delete yourself: ask another admin")
	}
	// Disable first so hosts learn of it: a deleted user has no entry
	// left to revoke.
	if _, err := a.d.Store.UpdateUser(name, func(u *store.User) error {
		u.Disabled, u.NotBefore = true, time.Now()
		return nil
	}); err != nil {
		return err
	}
	a.notifyRevocations()
	lost, err := a.d.Store.RemoveUser(name)
	if err != nil {
		return err
	}
	a.audit(r, "user.delete", name, removedFromText(lost))
	return a.answerDeleted(w, r, deletedView{User: name}, "user "+name, "user:"+name, lost)
}

func (a *API) deleteGroupAndGrants(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	name := r.PathValue("name")
	lost, err := a.d.Store.RemoveGroup(name, time.Now())
	if err != nil {
		return err
	}
	a.audit(r, "group.delete", name, removedFromText(lost))
	a.notifyRevocations()
	return a.answerDeleted(w, r, deletedView{Group: name}, "group "+name, "group:"+name, lost)
}

// answerDeleted records each list that lost grants to subject, signs the
// policies that carry those lists anew so that hosts drop the grants, and
// answers with the lists.
func (a *API) answerDeleted(w http.ResponseWriter, r *http.Request, v deletedView, what, subject string, lost []store.PermissionList) error {
	offices := map[string]bool{}
	for _, l := range lost {
		target := "office " + l.Office
		if l.Host != "" {
			target = "host " + l.Host
		}
		a.audit(r, "permissions.set", target, fmt.Sprintf("%s deleted: took out %s", what, grantsText(l.Grants)))
		if l.Office != "" {
			offices[l.Office] = true
		}
	}
	revs := map[string]uint64{}
	var failed []string
	for _, o := range sortedKeys(offices) {
		if _, err := a.d.Store.Office(o); errors.Is(err, store.ErrNotFound) {
			continue // the list of an office since deleted: no policy to sign
		}
		rev, err := a.resign(o)
		if err != nil {
			a.log.Error("re-sign policy after deleting "+what, "office", o, "err", err)
			failed = append(failed, o)
			continue
		}
		revs[o] = rev
	}
	if len(failed) > 0 {
		return httpError(http.StatusInternalServerError, "%s was deleted and %s, but signing the policy of office %s anew failed (see the coordinator's log): "+
			"its hosts keep the old lists until its next revision (outpost policy apply, or outpost perm set)", what, removedFromText(lost), strings.Join(failed, ", office "))
	}
	v.RemovedFrom = []listView{}
	for _, l := range lost {
		v.RemovedFrom = append(v.RemovedFrom, listView{Scope: l.Label(), Office: l.Office, Host: l.Host, Hostname: l.Hostname, Grants: l.Grants, Revision: revs[l.Office]})
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// removedFromText says which lists lost grants: "removed from the
// permissions of office hq and host pc-7", or "" for none.
func removedFromText(lost []store.PermissionList) string {
	if len(lost) == 0 {
		return ""
	}
	var names []string
	for _, l := range lost {
		names = append(names, l.Label())
	}
	return "removed from the permissions of " + andList(names)
}

// andList joins "a", "b" and "c" as "a, b and c".
func andList(xs []string) string {
	if len(xs) <= 1 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// userGrantView is one grant that names a user, directly or through one
// of its groups, and the list it is in.
type userGrantView struct {
	Scope    string   `json:"scope"` // "office hq", "host pc-7"
	Office   string   `json:"office,omitempty"`
	Host     string   `json:"host,omitempty"` // member id
	Hostname string   `json:"hostname,omitempty"`
	Subject  string   `json:"subject"`
	Rights   []string `json:"rights"`
	Deny     bool     `json:"deny"`
}

// showUserPermissions lists every grant of every office's and host's list
// that allows or denies the user anything, naming it or one of its groups:
// the offices' lists by name, then the hosts' by office and hostname.
func (a *API) showUserPermissions(w http.ResponseWriter, r *http.Request) error {
	if err := a.needAuth(); err != nil {
		return err
	}
	u, err := a.d.Store.User(r.PathValue("name"))
	if err != nil {
		return err
	}
	groups, err := a.d.Store.GroupsOf(u.Name)
	if err != nil {
		return err
	}
	names := map[string]bool{"user:" + u.Name: true}
	for _, g := range groups {
		names["group:"+g] = true
	}
	lists, err := a.d.Store.PermissionLists()
	if err != nil {
		return err
	}
	out := []userGrantView{}
	for _, l := range lists {
		for _, g := range l.Grants {
			if names[g.Subject] {
				out = append(out, userGrantView{Scope: l.Label(), Office: l.Office, Host: l.Host, Hostname: l.Hostname,
					Subject: g.Subject, Rights: g.Rights, Deny: g.Deny})
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u.Name, "groups": groups, "permissions": out})
	return nil
}
