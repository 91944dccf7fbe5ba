package api

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// agentStates are the values of GET /v1/agents?state=.
var agentStates = map[string]func(agentView) bool{
	"online":       func(v agentView) bool { return v.Connected },
	"offline":      func(v agentView) bool { return !v.Connected },
	"roaming":      func(v agentView) bool { return v.Roaming },
	"compliant":    func(v agentView) bool { return v.Compliant },
	"noncompliant": func(v agentView) bool { return !v.Compliant },
	"reboot":       func(v agentView) bool { return v.Reboot != nil },
	// upgrade-refused: a new version put in place of the agent's
	// executable was refused, and the old one runs on.
	"upgrade-refused": func(v agentView) bool { return v.UpgradeProblem != "" },
	// hung: the agent restarted itself in the last week because it made
	// no progress.
	"hung": func(v agentView) bool { return v.LastHang != "" },
}

// filterAgents keeps the agents that match the search of GET /v1/agents:
// q is a case-insensitive part of the hostname or id, state one of
// agentStates. The office filter is the store's, applied before.
//
// version=V keeps the members running version V, not_version=V those
// running another (an upgrade's rollout: who is not there yet).
//
// not_seen=DURATION (Go's form, such as 720h) keeps the members that are
// not connected and were last heard of longer ago than that: computers
// gone for good, retired without being removed. One that never checked in
// counts from its enrolment.
func filterAgents(q url.Values, views []agentView, now time.Time) ([]agentView, error) {
	text := strings.ToLower(strings.TrimSpace(q.Get("q")))
	state := strings.ToLower(strings.TrimSpace(q.Get("state")))
	keep := func(agentView) bool { return true }
	if state != "" {
		f, ok := agentStates[state]
		if !ok {
			return nil, httpError(http.StatusBadRequest, "state %q: want online, offline, roaming, compliant, noncompliant, reboot, upgrade-refused or hung", state)
		}
		keep = f
	}
	if v := q.Get("not_seen"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, httpError(http.StatusBadRequest, "not_seen %q: want a positive duration such as 720h", v)
		}
		byState, cutoff := keep, now.Add(-d)
		keep = func(v agentView) bool {
			seen := v.LastSeen
			if seen.IsZero() {
				seen = v.Enrolled
			}
			return byState(v) && !v.Connected && seen.Before(cutoff)
		}
	}
	for _, p := range []struct {
		name string
		same bool
	}{{"version", true}, {"not_version", false}} {
		v, ok := q[p.name]
		if !ok {
			continue
		}
		if len(v) != 1 || v[0] == "" || len(v[0]) > 64 {
			return nil, httpError(http.StatusBadRequest, "%s: want one version, as agents report it (outpost agent show)", p.name)
		}
		before, want, same := keep, v[0], p.same
		keep = func(v agentView) bool { return before(v) && (v.Version == want) == same }
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
