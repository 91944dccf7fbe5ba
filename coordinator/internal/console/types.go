package console

import "time"

// The API's objects as the console reads them (docs/api.md). The console
// decodes the JSON answers of the API rather than sharing its Go types:
// it is a client like the CLI, and sees what any client sees.

type office struct {
	Name            string    `json:"name"`
	Description     string    `json:"description"`
	Location        string    `json:"location"`
	Mode            string    `json:"mode"`
	Relays          []string  `json:"relays"`
	CheckinInterval string    `json:"checkin_interval"`
	TimeZone        string    `json:"time_zone"`
	Subnets         []string  `json:"subnets"`
	Rotation        string    `json:"rotation"`
	Revision        uint64    `json:"revision"`
	Created         time.Time `json:"created"`
	Agents          int       `json:"agents"`
}

type computer struct {
	Hostname string    `json:"hostname"`
	Office   string    `json:"office"`
	Added    time.Time `json:"added"`
	Member   string    `json:"member"`
	Enrolled time.Time `json:"enrolled"`
}

type enrollToken struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Office  string    `json:"office"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
}

type itemStatus struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status"`
	Message string    `json:"message"`
	Changed bool      `json:"changed"`
	At      time.Time `json:"at"`
}

type agent struct {
	ID        string       `json:"id"`
	Hostname  string       `json:"hostname"`
	Office    string       `json:"office"`
	Home      string       `json:"home"`
	Roaming   bool         `json:"roaming"`
	Role      string       `json:"role"`
	Address   string       `json:"address"`
	Addresses []string     `json:"addresses"`
	LastSeen  time.Time    `json:"last_seen"`
	Connected bool         `json:"connected"`
	Revision  uint64       `json:"revision"`
	Compliant bool         `json:"compliant"`
	Items     []itemStatus `json:"items"`
	Enrolled  time.Time    `json:"enrolled"`
	Version   string       `json:"version"`
}

type report struct {
	Revision uint64       `json:"revision"`
	At       time.Time    `json:"at"`
	Items    []itemStatus `json:"items"`
	Seq      uint64       `json:"seq"`
}

type artifact struct {
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Name     string    `json:"name"`
	Uploaded time.Time `json:"uploaded"`
}

type policyInfo struct {
	Office   string    `json:"office"`
	Revision uint64    `json:"revision"`
	Applied  time.Time `json:"applied"`
	YAML     string    `json:"yaml"`
}

type patch struct {
	ID              string    `json:"id"`
	Title           string    `json:"title"`
	Severity        string    `json:"severity"`
	Package         string    `json:"package"`
	FixedVersion    string    `json:"fixed_version"`
	Artifact        string    `json:"artifact"`
	RebootRequired  bool      `json:"reboot_required"`
	RollbackAllowed bool      `json:"rollback_allowed"`
	Supersedes      []string  `json:"supersedes"`
	Released        time.Time `json:"released"`
	Imported        time.Time `json:"imported"`
}

type approval struct {
	Patch  string    `json:"patch"`
	Office string    `json:"office"`
	By     string    `json:"by"`
	Window string    `json:"window"`
	Reboot string    `json:"reboot"`
	At     time.Time `json:"at"`
}

type missingReport struct {
	Hosts []struct {
		Agent    string `json:"agent"`
		Hostname string `json:"hostname"`
		Office   string `json:"office"`
		Missing  []struct {
			Patch   string `json:"patch"`
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"missing"`
	} `json:"hosts"`
	Offices []struct {
		Office  string         `json:"office"`
		Hosts   int            `json:"hosts"`
		Missing map[string]int `json:"missing"`
	} `json:"offices"`
}

type compliance struct {
	Office string `json:"office"`
	Hosts  int    `json:"hosts"`
	Items  []struct {
		ID     string         `json:"id"`
		Kind   string         `json:"kind"`
		Counts map[string]int `json:"counts"`
		Failed []struct {
			Host    string `json:"host"`
			Message string `json:"message"`
		} `json:"failed"`
		NotReportedBy int `json:"not_reported_by"`
	} `json:"items"`
}

type user struct {
	Name                string    `json:"name"`
	Role                string    `json:"role"`
	Disabled            bool      `json:"disabled"`
	ForceServerSecurity bool      `json:"force_server_security"`
	HasPassword         bool      `json:"has_password"`
	Groups              []string  `json:"groups"`
	LockedUntil         time.Time `json:"locked_until"`
	Created             time.Time `json:"created"`
}

type group struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Members     []string  `json:"members"`
	Created     time.Time `json:"created"`
}

type grant struct {
	Subject string   `json:"subject"`
	Rights  []string `json:"rights"`
	Deny    bool     `json:"deny,omitempty"`
}

type permissions struct {
	Office       string  `json:"office"`
	Host         string  `json:"host"`
	Grants       []grant `json:"grants"`
	OfficeGrants []grant `json:"office_grants"`
	Revision     uint64  `json:"revision"`
}

type event struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Detail  string    `json:"detail"`
	Allowed bool      `json:"allowed"`
	Source  string    `json:"source"`
	Remote  string    `json:"remote"`
}
