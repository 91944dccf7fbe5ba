package api

import (
	"errors"
	"net/http"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// requireOffice answers 404 naming an office that does not exist; what is
// for tells what it was wanted for ("the token", "move_to").
func (a *API) requireOffice(name, what string) error {
	_, err := a.d.Store.Office(name)
	if errors.Is(err, store.ErrNotFound) {
		return httpError(http.StatusNotFound, "office %s (%s) does not exist: see outpost office list", name, what)
	}
	return err
}

// deleteOffice removes an office. ?move_to=OTHER first makes OTHER the home
// and current office of every member that has the office as either, in the
// same transaction; without it the office must be empty.
func (a *API) deleteOffice(w http.ResponseWriter, r *http.Request) error {
	name, moveTo := r.PathValue("name"), r.URL.Query().Get("move_to")
	if err := a.requireOffice(name, "to remove"); err != nil {
		return err
	}
	if moveTo != "" {
		if moveTo == name {
			return httpError(http.StatusBadRequest, "move_to %s is the office being removed: name another office", moveTo)
		}
		if err := a.requireOffice(moveTo, "move_to"); err != nil {
			return err
		}
	}
	moved, err := a.d.Store.RemoveOffice(name, moveTo)
	if err != nil {
		return err
	}
	a.log.Info("office deleted", "office", name, "moved_to", moveTo, "moved", len(moved))
	for _, m := range moved {
		a.MemberPlaced(m.ID)
	}
	// Moved members learn their office at their next check-in; a notice
	// makes the connected ones check in now.
	if n, ok := a.d.Notifier.(interface{ NotifyMember(string) }); ok {
		for _, m := range moved {
			n.NotifyMember(m.ID)
		}
	} else if a.d.Notifier != nil && len(moved) > 0 {
		a.d.Notifier.NotifyRevision(moveTo, 0)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// officeRoutes are the calls on offices beyond their fields: computers
// added by name before they enrol, and installers.
func (a *API) officeRoutes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"POST /v1/offices/{name}/computers":              a.addComputers,
		"GET /v1/offices/{name}/computers":               a.listComputers,
		"DELETE /v1/offices/{name}/computers/{hostname}": a.removeComputer,
		"POST /v1/offices/{name}/installer":              a.installer,
	}
}
