package api

import (
	"net/http"
	"net/url"
	"strings"
)

// agentStates are the values of GET /v1/agents?state=.
var agentStates = map[string]func(agentView) bool{
	"online":       func(v agentView) bool { return v.Connected },
	"offline":      func(v agentView) bool { return !v.Connected },
	"roaming":      func(v agentView) bool { return v.Roaming },
	"compliant":    func(v agentView) bool { return v.Compliant },
	"noncompliant": func(v agentView) bool { return !v.Compliant },
	"reboot":       func(v agentView) bool { return v.Reboot != nil },
}

// filterAgents keeps the agents that match the search of GET /v1/agents:
// q is a case-insensitive part of the hostname or id, state one of
// agentStates. The office filter is the store's, applied before.
func filterAgents(q url.Values, views []agentView) ([]agentView, error) {
	text := strings.ToLower(strings.TrimSpace(q.Get("q")))
	state := strings.ToLower(strings.TrimSpace(q.Get("state")))
	keep := func(agentView) bool { return true }
	if state != "" {
		f, ok := agentStates[state]
		if !ok {
			return nil, httpError(http.StatusBadRequest, "state %q: want online, offline, roaming, compliant, noncompliant or reboot", state)
		}
		keep = f
	}
	if len(text) > 253 {
		return nil, httpError(http.StatusBadRequest, "q is longer than a hostname can be (253)")
	}
	out := []agentView{}
	for _, v := range views {
		if text != "" && !strings.Contains(strings.ToLower(v.Hostname), text) && !strings.Contains(strings.ToLower(v.ID), text) {
			continue
		}
		if keep(v) {
			out = append(out, v)
		}
	}
	return out, nil
}
