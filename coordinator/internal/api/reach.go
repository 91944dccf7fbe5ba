package api

import (
	"errors"
	"net"
	"net/http"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// hostReach tells a signed-in technician where a host takes direct
// sessions: each address the agent reported (and the one it connects
// from) with its session port, best first. The CLI tries them and falls
// back to a session brokered by the coordinator; the host's certificate,
// not the address, proves it is the host asked for.
func (a *API) hostReach(w http.ResponseWriter, r *http.Request) error {
	m, err := a.reachableHost(r)
	if err != nil {
		return err
	}
	direct := []string{}
	if host, port, err := net.SplitHostPort(m.SessionAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			direct = append(direct, m.SessionAddr) // bound to one address
		} else {
			seen := map[string]bool{}
			for _, ip := range append(append([]string(nil), m.Addresses...), m.Address) {
				if net.ParseIP(ip) == nil || seen[ip] {
					continue
				}
				seen[ip] = true
				direct = append(direct, net.JoinHostPort(ip, port))
			}
		}
	}
	connected := a.d.Presence != nil && a.d.Presence.Connected(m.ID)
	writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "hostname": m.Hostname, "direct": direct, "connected": connected})
	return nil
}

// hostSessionToken signs a token for a direct session with one host, for
// the signed-in user: the host takes nothing else (never the access
// token), and it is good nowhere else. The session itself is recorded by
// the host; the coordinator records that it was asked.
func (a *API) hostSessionToken(w http.ResponseWriter, r *http.Request) error {
	if a.d.Auth == nil {
		return httpError(http.StatusBadRequest, "this coordinator does not take user tokens")
	}
	m, err := a.reachableHost(r)
	if err != nil {
		return err
	}
	tok, exp, err := a.d.Auth.SessionToken(PrincipalFrom(r.Context()), m.ID)
	if errors.Is(err, auth.ErrNoSessionToken) {
		return httpError(http.StatusForbidden, "%v", err)
	}
	if err != nil {
		return err
	}
	a.audit(r, "connect", "host "+m.ID, "direct session token")
	writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "hostname": m.Hostname, "token": tok, "expires": exp})
	return nil
}

// reachableHost is the host the request names, for a caller with a
// read-only role or above, or with some right on it (the office's list and
// the host's, as they are now): others learn neither its id nor its
// addresses, only that there is no host they may reach by that name. The
// host still decides by the lists it holds.
func (a *API) reachableHost(r *http.Request) (*store.Member, error) {
	name := r.PathValue("host")
	m, err := a.d.Store.FindHost(name)
	if hasListRole(r, true) || a.d.Auth == nil {
		return m, err
	}
	if err == nil {
		var rights []string
		// As the host decides: the list of the office it is in now.
		if rights, err = a.rightsIn(PrincipalFrom(r.Context()), m.Office, m); err == nil && len(rights) > 0 {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
	} else if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	return nil, httpError(http.StatusNotFound, "no host you may reach is called %q: outpost hosts lists the ones you may", name)
}

// rightsIn is what p may do by office's list and, unless host is nil, the
// host's own list, as they are now: every allow naming p or one of its
// groups, less every deny.
func (a *API) rightsIn(p *auth.Principal, office string, host *store.Member) ([]string, error) {
	if p == nil || p.User == "" {
		return nil, nil
	}
	names, err := a.subjectNames(p.User)
	if err != nil {
		return nil, err
	}
	grants, err := a.d.Store.Permissions(store.OfficeScope(office))
	if err != nil {
		return nil, err
	}
	lists := [][]store.Grant{grants}
	if host != nil {
		own, err := a.d.Store.Permissions(store.HostScope(host.ID))
		if err != nil {
			return nil, err
		}
		lists = append(lists, own)
	}
	return grantedRights(names, lists...), nil
}
