package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/outposthq/outpost/coordinator/internal/placement"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// checkOverlap refuses ranges that another office already owns: placement
// must never have two answers. offices is read before the office's write
// transaction (bbolt must not open a read inside a write).
func checkOverlap(o *store.Office, offices []store.Office) error {
	if len(o.Subnets) == 0 {
		return nil
	}
	mine, err := placement.ParseSubnets(o.Subnets)
	if err != nil {
		return httpError(http.StatusBadRequest, "%v", err)
	}
	var others []placement.Office
	for _, x := range offices {
		others = append(others, placement.Office{Name: x.Name, Subnets: x.Subnets})
	}
	if name, m, t := placement.Overlap(mine, o.Name, others); name != "" {
		return httpError(http.StatusConflict, "subnet %s overlaps %s of office %s: an address must belong to one office", m, t, name)
	}
	return nil
}

// moveAgent puts an agent in an office by hand: it becomes the agent's
// home office, whose policy applies wherever no office's range matches.
func (a *API) moveAgent(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Office *string `json:"office"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Office == nil || strings.TrimSpace(*in.Office) == "" {
		return httpError(http.StatusBadRequest, "office is required")
	}
	if _, err := a.d.Store.Office(*in.Office); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, "office %s does not exist (outpost office list)", *in.Office)
		}
		return err
	}
	found, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return err
	}
	m, err := a.d.Store.UpdateMember(found.ID, func(m *store.Member) {
		// Until its next check-in places it by address, it is where it
		// was put.
		m.Home, m.Office = *in.Office, *in.Office
	})
	if err != nil {
		return err
	}
	a.log.Info("agent moved", "member", m.ID, "office", m.Office)
	a.audit(r, "agent.move", "agent "+m.ID, "to office "+m.Office)
	a.MemberPlaced(m.ID)
	// A notice makes the agent check in now and learn its office.
	if n, ok := a.d.Notifier.(interface{ NotifyMember(string) }); ok {
		n.NotifyMember(m.ID)
	}
	current, err := a.revisions()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.agentView(m, current))
	return nil
}
