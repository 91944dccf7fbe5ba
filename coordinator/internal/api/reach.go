package api

import (
	"net"
	"net/http"
)

// hostReach tells a signed-in technician where a host takes direct
// sessions: each address the agent reported (and the one it connects
// from) with its session port, best first. The CLI tries them and falls
// back to a session brokered by the coordinator; the host's certificate,
// not the address, proves it is the host asked for.
func (a *API) hostReach(w http.ResponseWriter, r *http.Request) error {
	m, err := a.d.Store.FindHost(r.PathValue("host"))
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
