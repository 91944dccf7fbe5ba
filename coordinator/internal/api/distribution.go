package api

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// validateDistribution checks the distribution server of an office in mode
// distribution: host:port (served over HTTPS) or an http(s) URL.
func validateDistribution(o *store.Office) error {
	if o.Mode != "distribution" {
		return nil
	}
	ds := o.DistributionServer
	if ds == "" {
		return httpError(http.StatusBadRequest, "mode distribution needs distribution_server: the host:port of the relay that pre-stages the office's content (--distribution-server 10.1.0.5:8090 with outpost office add or edit)")
	}
	hostport := ds
	if i := strings.Index(ds, "://"); i >= 0 {
		if s := ds[:i]; s != "http" && s != "https" {
			return httpError(http.StatusBadRequest, "distribution_server %q: want host:port, or an http(s) URL", ds)
		}
		hostport = strings.TrimRight(ds[i+3:], "/")
	}
	host, port, err := net.SplitHostPort(hostport)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 || len(ds) > 512 || strings.ContainsAny(hostport, "/?#@") {
		return httpError(http.StatusBadRequest, "distribution_server %q: want host:port, such as 10.1.0.5:8090", ds)
	}
	return nil
}

// stagingView is how far the distribution server has staged the office's
// newest revision, and which revision the office's agents have been told of.
type stagingView struct {
	Revision    uint64 `json:"revision"`          // being staged
	Released    uint64 `json:"released_revision"` // told to the office's agents
	Artifacts   int    `json:"artifacts"`
	Staged      int    `json:"staged"`
	Bytes       int64  `json:"bytes"`
	StagedBytes int64  `json:"staged_bytes"`
	Complete    bool   `json:"complete"`
	Error       string `json:"error,omitempty"`
	Server      string `json:"server,omitempty"` // the relay member that reported, if any
}

// nudgeRelays has the office's connected relays check in now: a change of
// relay URLs changes what their serving certificates may name, and a change
// of mode what they report.
func (a *API) nudgeRelays(office string) {
	n, ok := a.d.Notifier.(interface{ NotifyMember(id string) })
	if !ok {
		return
	}
	members, err := a.d.Store.Members(office)
	if err != nil {
		return
	}
	for _, m := range members {
		if m.Role == "relay" {
			n.NotifyMember(m.ID)
		}
	}
}

// staging is the office's distribution server's last report on the
// newest revision, and the revision its agents were told of.
func (a *API) staging(o *store.Office, newest uint64, members []store.Member) *stagingView {
	v := &stagingView{Revision: newest}
	if rel, err := a.d.Store.Released(o.Name); err == nil {
		v.Released = rel.Revision
	}
	for _, m := range members {
		if m.Role != "relay" || !o.IsDistributionServer(m.ServeURL) || m.Staging == nil {
			continue
		}
		st := m.Staging
		v.Server = m.ID
		if st.Revision == newest {
			v.Artifacts, v.Staged, v.Bytes, v.StagedBytes = st.Artifacts, st.Staged, st.Bytes, st.StagedBytes
			v.Complete = st.Complete()
		}
		v.Error = st.Error
	}
	if v.Server == "" {
		v.Error = "no relay of the office that advertises " + o.DistributionURL() + " has reported yet: " +
			"enrol the distribution server into this office with advertise_url " + o.DistributionURL()
	}
	if newest == 0 || v.Released >= newest {
		v.Complete = true
	}
	return v
}
