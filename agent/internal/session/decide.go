package session

import "github.com/outposthq/outpost/pkg/wire"

// Rights is a set of rights.
type Rights map[wire.Right]bool

// Decide computes what user, a member of groups, may do on host from the
// permission lists of its signed policy: the office-wide list (empty host)
// and the host's own. Every allow entry naming the user or one of its
// groups adds its rights; every deny entry naming them takes its rights
// away, whichever list or order it comes in: deny wins.
func Decide(lists []*wire.HostPermissions, host, user string, groups []string) Rights {
	names := map[string]bool{"user:" + user: true}
	for _, g := range groups {
		names["group:"+g] = true
	}
	allow, deny := Rights{}, Rights{}
	for _, l := range lists {
		if l.GetHost() != "" && l.GetHost() != host {
			continue
		}
		for _, g := range l.GetGrants() {
			if !names[g.GetSubject()] {
				continue
			}
			for _, r := range g.GetRights() {
				if g.GetDeny() {
					deny[r] = true
				} else {
					allow[r] = true
				}
			}
		}
	}
	out := Rights{}
	for r := range allow {
		if !deny[r] && r != wire.Right_RIGHT_UNSPECIFIED {
			out[r] = true
		}
	}
	return out
}

// List is the rights in a stable order.
func (r Rights) List() []wire.Right {
	var out []wire.Right
	for _, x := range []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_CONTROL, wire.Right_RIGHT_COMMAND, wire.Right_RIGHT_FILES, wire.Right_RIGHT_MANAGE} {
		if r[x] {
			out = append(out, x)
		}
	}
	return out
}

// needs is the right each kind of session takes.
func needs(k wire.SessionOpen_Kind) wire.Right {
	switch k {
	case wire.SessionOpen_KIND_EXEC, wire.SessionOpen_KIND_SHELL:
		return wire.Right_RIGHT_COMMAND
	case wire.SessionOpen_KIND_PUT, wire.SessionOpen_KIND_GET:
		return wire.Right_RIGHT_FILES
	case wire.SessionOpen_KIND_INVENTORY:
		return wire.Right_RIGHT_VIEW
	case wire.SessionOpen_KIND_REBOOT, wire.SessionOpen_KIND_SYNC:
		return wire.Right_RIGHT_CONTROL
	}
	return wire.Right_RIGHT_UNSPECIFIED
}
