package console

import "time"

// The API's objects as the console reads them (docs/api.md). The console
// decodes the JSON answers of the API rather than sharing its Go types:
// it is a client like the CLI, and sees what any client sees.

type office struct {
	Name               string    `json:"name"`
	Description        string    `json:"description"`
	Location           string    `json:"location"`
	Mode               string    `json:"mode"`
	Relays             []string  `json:"relays"`
	CheckinInterval    string    `json:"checkin_interval"`
	TimeZone           string    `json:"time_zone"`
	Subnets            []string  `json:"subnets"`
	Egress             []string  `json:"egress"`
	Rotation           string    `json:"rotation"`
	AllowPlainHTTP     bool      `json:"allow_plain_http"`
	DistributionServer string    `json:"distribution_server"` // mode distribution only
	Staging            *staging  `json:"staging"`             // mode distribution only
	Revision           uint64    `json:"revision"`
	Created            time.Time `json:"created"`
	Agents             int       `json:"agents"`
}

// staging is how far an office's distribution server has staged the
// newest revision, and which revision the office's agents were told of.
type staging struct {
	Revision    uint64 `json:"revision"`
	Released    uint64 `json:"released_revision"`
	Artifacts   int    `json:"artifacts"`
	Staged      int    `json:"staged"`
	Bytes       int64  `json:"bytes"`
	StagedBytes int64  `json:"staged_bytes"`
	Complete    bool   `json:"complete"`
	Error       string `json:"error"`
	Server      string `json:"server"` // the relay member that reported
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
	State   string    `json:"state"`
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
	// UpgradeProblem is why the agent refused a new version of itself.
	UpgradeProblem string `json:"upgrade_problem"`
	// LastHang is when the agent last restarted itself after a hang.
	LastHang string            `json:"last_hang"`
	Labels   map[string]string `json:"labels"`
	Reboot   *struct {
		Items []string  `json:"items"`
		Since time.Time `json:"since"`
	} `json:"reboot"`
}

type report struct {
	Revision uint64       `json:"revision"`
	At       time.Time    `json:"at"`
	Items    []itemStatus `json:"items"`
	Seq      uint64       `json:"seq"`
}

type artifact struct {
	SHA256        string    `json:"sha256"`
	Size          int64     `json:"size"`
	Name          string    `json:"name"`
	Uploaded      time.Time `json:"uploaded"`
	AlreadyStored bool      `json:"already_stored"`
}

type policyInfo struct {
	Office   string    `json:"office"`
	Revision uint64    `json:"revision"`
	Applied  time.Time `json:"applied"`
	YAML     string    `json:"yaml"`
	// Unchanged: the apply asked what the current revision holds.
	Unchanged bool `json:"unchanged"`
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

// patchRule approves patches by severity: in its test office at once, in
// its other offices once the test office has been clean for AfterDays
// (GET /v1/patch-rules).
type patchRule struct {
	Name        string    `json:"name"`
	MinSeverity string    `json:"min_severity"`
	TestOffice  string    `json:"test_office"`
	AfterDays   int       `json:"after_days"`
	Offices     []string  `json:"offices"`
	Window      string    `json:"window"`
	Reboot      string    `json:"reboot"`
	Created     time.Time `json:"created"`
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
	ETag         string  `json:"etag"`
	// Warnings name grants to users or groups that do not exist yet.
	Warnings []string `json:"warnings"`
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

type targets struct {
	Offices []string `json:"offices"`
	Agents  []string `json:"agents"`
	Labels  []string `json:"labels"`
}

// namedPolicy is a named policy (GET /v1/policies, /v1/policies/{name}).
type namedPolicy struct {
	Name      string            `json:"name"`
	Priority  int               `json:"priority"`
	Targets   targets           `json:"targets"`
	Applied   time.Time         `json:"applied"`
	Created   time.Time         `json:"created"`
	YAML      string            `json:"yaml"`
	Published map[string]uint64 `json:"published"`
	Computers []string          `json:"computers"`
}

// conflict is one conflict of a 409 answer, or of an effective policy.
type conflict struct {
	Item      string   `json:"item"`
	Level     string   `json:"level"`
	Priority  int      `json:"priority"`
	Policies  []string `json:"policies"`
	Computers []string `json:"computers"`
	Offices   []string `json:"offices"`
}

// effective is what one agent runs and why (GET /v1/agents/{id}/policy).
type effective struct {
	Agent    string            `json:"agent"`
	Hostname string            `json:"hostname"`
	Office   string            `json:"office"`
	Revision uint64            `json:"revision"`
	Variant  bool              `json:"variant"`
	Labels   map[string]string `json:"labels"`
	Items    []struct {
		ID         string   `json:"id"`
		Policy     string   `json:"policy"`
		Level      string   `json:"level"`
		Priority   int      `json:"priority"`
		Overridden []string `json:"overridden"`
		Item       struct {
			Kind       string `json:"kind"`
			ReportOnly bool   `json:"report_only"`
		} `json:"item"`
	} `json:"items"`
	Conflicts []conflict `json:"conflicts"`
}

// reach is where a host takes direct technician sessions.
type reach struct {
	Direct    []string `json:"direct"`
	Connected bool     `json:"connected"`
}
