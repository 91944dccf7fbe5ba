package api

import (
	"errors"
	"net"
	"net/http"
	"strings"

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

// reachableHost is the host the request names: as FindHost finds it for
// a caller with a read-only role or above, and among the hosts where the
// caller has some right for others (Store.FindHostFor), who learn neither
// the id nor the addresses of any other host, only that there is no host
// they may reach by that name. The host still decides by the lists it
// holds.
func (a *API) reachableHost(r *http.Request) (*store.Member, error) {
	name := r.PathValue("host")
	if hasListRole(r, true) || a.d.Auth == nil {
		return a.d.Store.FindHost(name)
	}
	var user string
	if p := PrincipalFrom(r.Context()); p != nil {
		user = p.User
	}
	m, err := a.d.Store.FindHostFor(user, name)
	if errors.Is(err, store.ErrNotFound) {
		// Recorded as the broker records a session refused so: asking
		// over HTTP leaves the same trace.
		a.d.Auth.Audit(store.AuditEvent{Actor: user, Action: "connect", Target: name, Detail: "refused: no right on any host of that name", Remote: remoteAddr(r)})
		return nil, httpError(http.StatusNotFound, "%s: outpost hosts lists the ones you may", strings.TrimSuffix(err.Error(), ": "+store.ErrNotFound.Error()))
	}
	return m, err
}

// rightsIn is what p may do by office's list and, unless host is nil, the
// host's own list, as they are now (Store.RightsIn).
func (a *API) rightsIn(p *auth.Principal, office string, host *store.Member) ([]string, error) {
	if p == nil {
		return nil, nil
	}
	var id string
	if host != nil {
		id = host.ID
	}
	return a.d.Store.RightsIn(p.User, office, id)
}
