package api

import (
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// hostnamePattern is what an agent may report as its hostname and an admin
// may pre-register: DNS-like labels, underscores tolerated (Windows names).
var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$`)

const maxComputersPerCall = 1000

type computerView struct {
	Hostname string    `json:"hostname"`
	Office   string    `json:"office"`
	Added    time.Time `json:"added"`
	Member   string    `json:"member"`
	Enrolled time.Time `json:"enrolled,omitzero"`
}

func computerViews(cs []store.Computer) []computerView {
	out := []computerView{}
	for _, c := range cs {
		out = append(out, computerView{Hostname: c.Hostname, Office: c.Office, Added: c.Added, Member: c.Member, Enrolled: c.Enrolled})
	}
	return out
}

// addComputers puts hostnames in an office before they enrol: at enrollment
// such a computer goes to this office whatever office its token is for.
func (a *API) addComputers(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	var in struct {
		Hostnames []string `json:"hostnames"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if len(in.Hostnames) == 0 {
		return httpError(http.StatusBadRequest, `hostnames is required: {"hostnames":["pc-1","pc-2"]}`)
	}
	if len(in.Hostnames) > maxComputersPerCall {
		return httpError(http.StatusBadRequest, "at most %d hostnames per call", maxComputersPerCall)
	}
	for i, h := range in.Hostnames {
		h = strings.TrimSpace(h)
		if len(h) > 253 || !hostnamePattern.MatchString(h) {
			return httpError(http.StatusBadRequest, "hostname %q: want a host name such as pc-17 or pc-17.corp.example", h)
		}
		in.Hostnames[i] = h
	}
	if err := a.requireOffice(office, "to add computers to"); err != nil {
		return err
	}
	cs, err := a.d.Store.AddComputers(office, in.Hostnames, time.Now().UTC())
	if err != nil {
		return err
	}
	a.log.Info("computers added to office", "office", office, "count", len(cs))
	writeJSON(w, http.StatusCreated, map[string]any{"computers": computerViews(cs)})
	return nil
}

func (a *API) listComputers(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	if err := a.requireOffice(office, "to list computers of"); err != nil {
		return err
	}
	cs, err := a.d.Store.Computers(office)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"computers": computerViews(cs)})
	return nil
}

func (a *API) removeComputer(w http.ResponseWriter, r *http.Request) error {
	if err := a.d.Store.RemoveComputer(r.PathValue("name"), r.PathValue("hostname")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
