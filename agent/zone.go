package agent

import (
	"time"
	_ "time/tzdata" // an agent may run where the system has no zone database
)

// officeLocation is the time zone of the agent's office, in which item
// windows are read; UTC until the office says otherwise or when its zone
// is unknown here.
func (a *Agent) officeLocation() *time.Location {
	a.mu.Lock()
	name := a.info.GetTimeZone()
	a.mu.Unlock()
	if name == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		a.log.Warn("office time zone unknown here; reading windows in UTC", "time_zone", name, "err", err)
		return time.UTC
	}
	return loc
}
