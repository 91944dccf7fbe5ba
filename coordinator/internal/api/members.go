package api

import (
	"crypto/rand"
	"net/http"
	"time"
)

// memberRoutes are removing members and rotating an office's gossip key.
func (a *API) memberRoutes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"DELETE /v1/agents/{id}":                    a.removeMember,
		"POST /v1/offices/{name}/gossip-key/rotate": a.rotateGossipKey,
	}
}

func (a *API) startRotation(office string) (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	o, err := a.d.Store.StartKeyRotation(office, key, time.Now())
	if err != nil {
		return "", err
	}
	a.log.Info("gossip key rotation started", "office", office)
	return o.Rotation, nil
}

// rotateGossipKey replaces an office's gossip key without splitting the
// office: members add the new key, switch to it, then drop the old one,
// each step at a check-in.
func (a *API) rotateGossipKey(w http.ResponseWriter, r *http.Request) error {
	phase, err := a.startRotation(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"office": r.PathValue("name"), "rotation": phase})
	return nil
}

// removeMember forgets an agent or relay: its certificate opens no
// connection any more, its live connection is closed, and its office's
// gossip key is rotated so that it is cut off from the office too.
func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	// One transaction: a member never stays removed with its office's key.
	m, err := a.d.Store.RemoveMember(r.PathValue("id"), key, time.Now())
	if err != nil {
		return err
	}
	// Recorded once done, whatever the steps after it meet.
	a.audit(r, "agent.delete", "agent "+m.ID, "hostname "+m.Hostname+", office "+m.Office)
	if d, ok := a.d.Presence.(interface{ Disconnect(string) }); ok {
		d.Disconnect(m.ID)
	}
	a.log.Info("member removed; its office's gossip key rotation started", "member", m.ID, "hostname", m.Hostname, "office", m.Office)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
