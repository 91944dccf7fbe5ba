// Package api is the coordinator's admin HTTP API under /v1/ (documented in
// docs/api.md), with /healthz and /metrics. Handlers return errors; one
// adapter maps them to a status and a JSON body. It holds no state: the
// store does, and uploads stream straight through to the file server.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // office time zones must resolve on hosts without zoneinfo

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/placement"
	"github.com/outposthq/outpost/coordinator/internal/policy"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// FileServer holds artifact bytes.
type FileServer interface {
	// Upload streams r to the file server and returns its SHA-256 and size.
	Upload(ctx context.Context, r io.Reader, size int64) (string, int64, error)
	// Stat says whether an artifact's bytes are there, and their size.
	Stat(ctx context.Context, sha256 string) (int64, bool, error)
	// Remove deletes an artifact's bytes and says whether they were there.
	Remove(ctx context.Context, sha256 string) (bool, error)
}

// Notifier tells connected members that a revision is out.
type Notifier interface {
	NotifyRevision(office string, revision uint64)
	// NotifyRevisions tells several offices at once (a change that
	// reaches them all starts in each together).
	NotifyRevisions(revs map[string]uint64)
}

// Presence says whether a member is connected now.
type Presence interface {
	Connected(id string) bool
}

// Signer signs a compiled policy.
type Signer interface {
	Sign(p *wire.Policy) ([]byte, error)
}

// Deps are what the API works with.
type Deps struct {
	Store    *store.Store
	Files    FileServer
	Notifier Notifier
	Presence Presence
	Signer   Signer
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// AdminToken is compared in constant time with each request's bearer token.
	AdminToken string
	// Auth signs users in and verifies their tokens; the admin token is the
	// bootstrap credential of its first admin.
	Auth *auth.Server
	// Access tells hosts of revocations and re-signed permission lists.
	Access AccessNotifier
	// CAFingerprint and QUICPort are handed to a signing-in CLI so that it
	// can reach hosts through the coordinator's QUIC port.
	CAFingerprint string
	// CA is the coordinator's CA as it is now (GET /v1/ca); nil: not shown.
	CA       CA
	QUICPort string
	// PublicAddress is the host:port agents reach the QUIC endpoint at;
	// installers carry it.
	PublicAddress string
	// DataDir is the coordinator's data directory, which backups take
	// whole, and Version the coordinator's, which they record.
	DataDir string
	Version string
	// BodyWait bounds how long a request body other than an upload's may
	// take to arrive whole (default a minute); UploadIdle how long an
	// artifact upload may bring no byte (default a minute), however long
	// it takes in all.
	BodyWait   time.Duration
	UploadIdle time.Duration
}

// API is the HTTP handler.
type API struct {
	d   Deps
	log *slog.Logger
	mux *http.ServeMux
	req *prometheus.CounterVec
	// scopeMu makes checking policies for conflicts and publishing what
	// was checked one step (scope.go).
	scopeMu sync.Mutex
	// artifactsMu keeps an artifact or a catalog patch from being removed
	// between a change looking it up and storing what names it: every such
	// change holds it to read, a removal to write (artifacts.go,
	// patches.go).
	artifactsMu sync.RWMutex
}

const maxJSONBody = 1 << 20

// New builds the handler.
func New(d Deps, reg prometheus.Registerer) (*API, error) {
	if d.BodyWait == 0 {
		d.BodyWait = defaultBodyWait
	}
	if d.UploadIdle == 0 {
		d.UploadIdle = defaultUploadIdle
	}
	a := &API{d: d, log: d.Logger.With("component", "api"), mux: http.NewServeMux(),
		req: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_coordinator_http_requests_total", Help: "Admin API requests by route and status code."},
			[]string{"route", "code"}),
	}
	if err := reg.Register(a.req); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	routes := map[string]func(http.ResponseWriter, *http.Request) error{
		"POST /v1/offices":                      a.createOffice,
		"GET /v1/offices":                       a.listOffices,
		"GET /v1/offices/{name}":                a.showOffice,
		"PATCH /v1/offices/{name}":              a.updateOffice,
		"DELETE /v1/offices/{name}":             a.deleteOffice,
		"POST /v1/offices/{name}/tokens":        a.createToken,
		"GET /v1/offices/{name}/tokens":         a.listTokens,
		"DELETE /v1/offices/{name}/tokens/{id}": a.revokeToken,
		"PUT /v1/offices/{name}/policy":         a.applyPolicy,
		"GET /v1/offices/{name}/policy":         a.showPolicy,
		"GET /v1/agents":                        a.listAgents,
		"GET /v1/agents/{id}":                   a.showAgent,
		"POST /v1/agents/{id}/move":             a.moveAgent,
		"POST /v1/artifacts":                    a.uploadArtifact,
		"GET /v1/artifacts":                     a.listArtifacts,
		"GET /v1/artifacts/{sha256}":            a.showArtifact,
		"DELETE /v1/artifacts/{sha256}":         a.removeArtifact,
		"POST /v1/backup":                       a.takeBackup,
		"GET /v1/ca":                            a.showCA,
	}
	for pattern, h := range a.accessRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range a.memberRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range a.patchRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range a.officeRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range a.scopeRoutes() {
		routes[pattern] = h
	}
	for pattern, h := range routes {
		a.mux.Handle(pattern, a.handle(pattern, h))
	}
	a.mux.Handle("/v1/", a.handle("other", func(w http.ResponseWriter, r *http.Request) error {
		return httpError(http.StatusNotFound, "no such API call: %s %s (see docs/api.md)", r.Method, r.URL.Path)
	}))
	return a, nil
}

// ServeHTTP serves the API. A request's body must arrive whole within
// BodyWait (an upload's within its idle limit instead, uploadArtifact):
// also one that no handler reads, as that of a request refused before
// anything was read, since net/http reads what a handler left (up to 256
// KiB) before it answers. net/http clears the deadline once the body is
// read to its end, when it starts watching for the client going away.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hasBody(r) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.d.BodyWait))
		r.Body = &deadlineBody{ReadCloser: r.Body, wait: a.d.BodyWait}
	}
	a.mux.ServeHTTP(w, r)
}

// statusError carries the status an error is answered with.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// boolParam is a query parameter that is true or false (false when absent).
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, httpError(http.StatusBadRequest, "%s=%q: use true or false", name, v)
	}
	return b, nil
}

func httpError(code int, format string, args ...any) error {
	return &statusError{code: code, msg: fmt.Sprintf(format, args...)}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// handle authenticates, runs h and maps its error to an answer.
func (a *API) handle(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := &statusWriter{ResponseWriter: rw}
		r, err := a.authorize(route, r)
		if err == nil {
			err = h(w, r)
		}
		if action, ok := changeActions[route]; ok && err == nil && w.code < 400 {
			a.audit(r, action, changeTarget(route, r), "")
		}
		if err != nil {
			code, msg := http.StatusInternalServerError, "internal error; see the coordinator's log"
			var se *statusError
			var pe *policy.Error
			var mbe *http.MaxBytesError
			var ce *conflictError
			switch {
			case errors.As(err, &ce):
				writeJSON(w, http.StatusConflict, map[string]any{"error": ce.msg, "conflicts": ce.conflicts})
				a.req.WithLabelValues(route, fmt.Sprint(http.StatusConflict)).Inc()
				return
			case errors.As(err, &se):
				code, msg = se.code, se.msg
			case errors.As(err, &pe):
				code, msg = http.StatusBadRequest, pe.Error()
			case errors.Is(err, errPolicyTooLarge):
				code, msg = http.StatusUnprocessableEntity, err.Error()
			case errors.Is(err, errPatchPinned):
				code, msg = http.StatusConflict, err.Error()
			case errors.As(err, &mbe):
				code, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
			case errors.Is(err, store.ErrNotFound):
				code, msg = http.StatusNotFound, err.Error()
			case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
				// A message that says why needs no ": conflict" after it.
				code, msg = http.StatusConflict, strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error())
			default:
				a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			}
			writeJSON(w, code, map[string]string{"error": msg})
		}
		code := w.code
		if code == 0 {
			code = http.StatusOK
		}
		a.req.WithLabelValues(route, fmt.Sprint(code)).Inc()
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *statusError
		if errors.As(err, &mbe) || errors.As(err, &se) {
			return err
		}
		return httpError(http.StatusBadRequest, "request body is not valid JSON for this call: %v", err)
	}
	// Only white space may follow (More would let a stray "}" or "]"
	// through).
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return httpError(http.StatusBadRequest, "request body has data after the JSON object")
	}
	return nil
}

// ---- offices

// Duration is a time.Duration that travels as "2m0s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"2m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

type officeView struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Location        string   `json:"location"`
	Mode            string   `json:"mode"`
	Relays          []string `json:"relays"`
	CheckinInterval Duration `json:"checkin_interval"`
	TimeZone        string   `json:"time_zone"`
	Subnets         []string `json:"subnets"`
	Egress          []string `json:"egress"`
	Rotation        string   `json:"rotation,omitempty"` // gossip key rotation phase, while one is under way
	AllowPlainHTTP  bool     `json:"allow_plain_http"`
	// DistributionServer and Staging: mode distribution only.
	DistributionServer string       `json:"distribution_server,omitempty"`
	Staging            *stagingView `json:"staging,omitempty"`
	Revision           uint64       `json:"revision"`
	Created            time.Time    `json:"created"`
	Agents             int          `json:"agents"`
}

type officeInput struct {
	Name            *string   `json:"name"`
	Description     *string   `json:"description"`
	Location        *string   `json:"location"`
	Mode            *string   `json:"mode"`
	Relays          *[]string `json:"relays"`
	CheckinInterval *Duration `json:"checkin_interval"`
	TimeZone        *string   `json:"time_zone"`
	Subnets         *[]string `json:"subnets"`
	Egress          *[]string `json:"egress"`
	AllowPlainHTTP  *bool     `json:"allow_plain_http"`
	// DistributionServer is host:port (HTTPS) or a full URL.
	DistributionServer *string `json:"distribution_server"`
}

var officeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const (
	defaultInterval = 2 * time.Minute
	minInterval     = 5 * time.Second
	maxInterval     = 24 * time.Hour
)

func (in officeInput) apply(o *store.Office) error {
	if in.Description != nil {
		o.Description = strings.TrimSpace(*in.Description)
	}
	if in.Location != nil {
		o.Location = strings.TrimSpace(*in.Location)
	}
	if in.Mode != nil {
		o.Mode = *in.Mode
	}
	if in.Relays != nil {
		o.Relays = *in.Relays
	}
	if in.AllowPlainHTTP != nil {
		v := *in.AllowPlainHTTP
		o.AllowPlainHTTP = &v
	}
	if in.DistributionServer != nil {
		o.DistributionServer = strings.TrimSpace(*in.DistributionServer)
		// Kept while the office is in another mode (an office switched
		// away and back keeps it), but not given for one: it would be
		// stored and never shown.
		if o.DistributionServer != "" && o.Mode != "distribution" {
			return httpError(http.StatusBadRequest, "distribution_server %q is for mode distribution only (office %s is in mode %s): set mode distribution with it, or leave it empty", o.DistributionServer, o.Name, o.Mode)
		}
	}
	if in.CheckinInterval != nil {
		o.CheckinInterval = time.Duration(*in.CheckinInterval)
	}
	if in.TimeZone != nil {
		o.TimeZone = strings.TrimSpace(*in.TimeZone)
	}
	if in.Subnets != nil {
		ps, err := placement.ParseSubnets(*in.Subnets)
		if err != nil {
			return httpError(http.StatusBadRequest, "%v", err)
		}
		o.Subnets = []string{}
		for _, p := range ps {
			o.Subnets = append(o.Subnets, p.String())
		}
	}
	if in.Egress != nil {
		ps, err := placement.ParseSubnets(*in.Egress)
		if err != nil {
			return httpError(http.StatusBadRequest, "egress: %v", err)
		}
		o.Egress = nil
		for _, p := range ps {
			o.Egress = append(o.Egress, p.String())
		}
	}
	return validateOffice(o)
}

func validateOffice(o *store.Office) error {
	if !officeName.MatchString(o.Name) {
		return httpError(http.StatusBadRequest, "office name %q: use 1-63 lower-case letters, digits and dashes, starting with a letter or digit", o.Name)
	}
	if len(o.Description) > 1024 || len(o.Location) > 256 {
		return httpError(http.StatusBadRequest, "description (1024) or location (256) is too long")
	}
	switch o.Mode {
	case "direct", "relay", "distribution":
	default:
		return httpError(http.StatusBadRequest, "mode %q: want direct, relay or distribution", o.Mode)
	}
	if len(o.Relays) > 16 {
		return httpError(http.StatusBadRequest, "at most 16 relays per office")
	}
	for _, r := range o.Relays {
		if !validRelayURL(r) {
			return httpError(http.StatusBadRequest, "relay %q: want a URL such as https://10.1.0.5:8090", r)
		}
	}
	if o.Mode == "relay" && len(o.Relays) == 0 {
		return httpError(http.StatusBadRequest, "mode relay needs at least one relay URL (relays; --relay URL)")
	}
	if err := validateDistribution(o); err != nil {
		return err
	}
	for _, r := range o.RelayURLs() {
		if strings.HasPrefix(r, "http://") && !o.PlainHTTPAllowed() {
			return httpError(http.StatusBadRequest, "relay %q is plain HTTP, which office %s does not allow: use https:// (relays get a certificate from the coordinator's CA), "+
				"or allow plain HTTP for the office (allow_plain_http; --allow-plain-http)", r, o.Name)
		}
	}
	if _, err := time.LoadLocation(o.TimeZone); err != nil || strings.EqualFold(o.TimeZone, "local") {
		return httpError(http.StatusBadRequest, "time_zone (--time-zone) %q: want an IANA name such as Europe/Berlin, or UTC", o.TimeZone)
	}
	if o.CheckinInterval < minInterval || o.CheckinInterval > maxInterval {
		return httpError(http.StatusBadRequest, "checkin_interval (--interval) %v: want between %v and %v", o.CheckinInterval, minInterval, maxInterval)
	}
	return nil
}

// validRelayURL tells whether r is an http(s) base URL naming a host,
// without user, query or fragment: agents append the blob's path to it,
// and the CA certifies its host for the office's relays.
func validRelayURL(r string) bool {
	if !strings.HasPrefix(r, "http://") && !strings.HasPrefix(r, "https://") || len(r) > 512 {
		return false
	}
	u, err := url.Parse(r)
	return err == nil && u.Hostname() != "" && u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
}

func (a *API) view(o *store.Office) (officeView, error) {
	v := officeView{Name: o.Name, Description: o.Description, Location: o.Location, Mode: o.Mode,
		Relays: o.Relays, CheckinInterval: Duration(o.CheckinInterval), TimeZone: o.TimeZone, Subnets: o.Subnets, Egress: o.Egress, Rotation: o.Rotation, Created: o.Created,
		AllowPlainHTTP: o.PlainHTTPAllowed()}
	if o.Mode == "distribution" {
		v.DistributionServer = o.DistributionServer
	}
	if v.Relays == nil {
		v.Relays = []string{}
	}
	if v.Subnets == nil {
		v.Subnets = []string{}
	}
	if v.Egress == nil {
		v.Egress = []string{}
	}
	if p, err := a.d.Store.Policy(o.Name); err == nil {
		v.Revision = p.Revision
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	members, err := a.d.Store.Members(o.Name)
	if err != nil {
		return v, err
	}
	for _, m := range members {
		if m.Role == "agent" {
			v.Agents++
		}
	}
	if o.Mode == "distribution" {
		v.Staging = a.staging(o, v.Revision, members)
	}
	return v, nil
}

func (a *API) createOffice(w http.ResponseWriter, r *http.Request) error {
	var in officeInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil {
		return httpError(http.StatusBadRequest, "name is required")
	}
	// New offices take relay content over HTTPS only, unless told.
	o := &store.Office{Name: *in.Name, Mode: "direct", CheckinInterval: defaultInterval, TimeZone: "UTC", Created: time.Now().UTC(), AllowPlainHTTP: new(bool)}
	if err := in.apply(o); err != nil {
		return err
	}
	offices, err := a.d.Store.Offices()
	if err != nil {
		return err
	}
	if err := checkOverlap(o, offices); err != nil {
		return err
	}
	o.GossipKey = make([]byte, 32)
	if _, err := rand.Read(o.GossipKey); err != nil {
		return err
	}
	if err := a.d.Store.CreateOffice(*o); err != nil {
		return err
	}
	a.log.Info("office created", "office", o.Name, "mode", o.Mode)
	a.audit(r, "office.create", "office "+o.Name, "mode "+o.Mode)
	v, err := a.view(o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *API) listOffices(w http.ResponseWriter, r *http.Request) error {
	offices, err := a.d.Store.Offices()
	if err != nil {
		return err
	}
	out := []officeView{}
	for i := range offices {
		v, err := a.view(&offices[i])
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"offices": out})
	return nil
}

func (a *API) showOffice(w http.ResponseWriter, r *http.Request) error {
	o, err := a.d.Store.Office(r.PathValue("name"))
	if err != nil {
		return err
	}
	v, err := a.view(o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) updateOffice(w http.ResponseWriter, r *http.Request) error {
	var in officeInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Name != nil && *in.Name != r.PathValue("name") {
		return httpError(http.StatusBadRequest, "an office cannot be renamed")
	}
	offices, err := a.d.Store.Offices()
	if err != nil {
		return err
	}
	o, err := a.d.Store.UpdateOffice(r.PathValue("name"), func(o *store.Office) error {
		if err := in.apply(o); err != nil {
			return err
		}
		return checkOverlap(o, offices)
	})
	if err != nil {
		return err
	}
	a.nudgeRelays(o.Name)
	v, err := a.view(o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// ---- enrollment tokens

type tokenView struct {
	Token   string    `json:"token,omitempty"`
	ID      string    `json:"id"`
	Office  string    `json:"office"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
	Revoked time.Time `json:"revoked,omitzero"`
	// State is valid, used up, expired or revoked: whether it enrols.
	State string `json:"state"`
}

func newTokenView(t *store.Token, now time.Time) tokenView {
	state := "valid"
	switch {
	case !t.Revoked.IsZero():
		state = "revoked"
	case now.After(t.Expires):
		state = "expired"
	case t.Used >= t.Uses:
		state = "used up"
	}
	return tokenView{ID: t.ID, Office: t.Office, Role: t.Role, Expires: t.Expires, Uses: t.Uses, Used: t.Used, Revoked: t.Revoked, State: state}
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	in := struct {
		TTL  *Duration `json:"ttl"`
		Uses *int      `json:"uses"`
		Role *string   `json:"role"`
	}{}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	ttl, uses, role := 24*time.Hour, 1, "agent"
	if in.TTL != nil {
		ttl = time.Duration(*in.TTL)
	}
	if in.Uses != nil {
		uses = *in.Uses
	}
	if in.Role != nil {
		role = *in.Role
	}
	if ttl < time.Minute || ttl > 365*24*time.Hour {
		return httpError(http.StatusBadRequest, "ttl %v: want between 1m and 8760h", ttl)
	}
	if uses < 1 || uses > 100000 {
		return httpError(http.StatusBadRequest, "uses %d: want between 1 and 100000", uses)
	}
	if role != "agent" && role != "relay" {
		return httpError(http.StatusBadRequest, "role %q: want agent or relay", role)
	}
	if err := a.requireOffice(r.PathValue("name"), "of the token"); err != nil {
		return err
	}
	var tok string
	var t store.Token
	// An id is the start of the secret's hash: another token may have it
	// (one in 2^32 per token kept); a new secret then gets another.
	for try := 0; ; try++ {
		var secret [20]byte
		if _, err := rand.Read(secret[:]); err != nil {
			return err
		}
		tok = "opt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret[:]))
		sum := sha256.Sum256([]byte(tok))
		t = store.Token{ID: hex.EncodeToString(sum[:4]), Hash: hex.EncodeToString(sum[:]), Office: r.PathValue("name"),
			Role: role, Expires: time.Now().Add(ttl).UTC().Truncate(time.Second), Uses: uses, Created: time.Now().UTC()}
		err := a.d.Store.CreateToken(t)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrExists) || try == 2 {
			return err
		}
	}
	a.log.Info("enrollment token created", "token_id", t.ID, "office", t.Office, "role", role, "uses", uses, "expires", t.Expires)
	a.audit(r, "token.create", "office "+t.Office, fmt.Sprintf("token %s, role %s, %s, expires %s", t.ID, role, plural(uses, "use"), t.Expires.Format(time.RFC3339)))
	v := newTokenView(&t, time.Now())
	v.Token = tok
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.d.Store.Office(r.PathValue("name")); err != nil {
		return err
	}
	tokens, err := a.d.Store.Tokens(r.PathValue("name"))
	if err != nil {
		return err
	}
	sort.Slice(tokens, func(i, j int) bool { return tokens[i].Created.Before(tokens[j].Created) })
	out := []tokenView{}
	now := time.Now()
	for i := range tokens {
		out = append(out, newTokenView(&tokens[i], now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	return nil
}

// revokeToken makes a token enrol nothing more; members that enrolled
// with it stay (agent rm removes one).
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	office, id := r.PathValue("name"), r.PathValue("id")
	if _, err := a.d.Store.Office(office); err != nil {
		return err
	}
	t, err := a.d.Store.RevokeToken(office, id, time.Now())
	if err != nil {
		return err
	}
	a.log.Info("enrollment token revoked", "token_id", t.ID, "office", office, "used", t.Used, "uses", t.Uses)
	a.audit(r, "token.revoke", "office "+office, fmt.Sprintf("token %s, role %s, used %d of %d", t.ID, t.Role, t.Used, t.Uses))
	writeJSON(w, http.StatusOK, newTokenView(t, time.Now()))
	return nil
}

// ---- policy

type policyView struct {
	Office   string            `json:"office"`
	Revision uint64            `json:"revision"`
	Applied  time.Time         `json:"applied"`
	YAML     string            `json:"yaml"`
	Items    []json.RawMessage `json:"items"`
	// Variants are the agents of the office that get a policy of their
	// own at this revision (scope.go).
	Variants []string `json:"variants"`
	// Unchanged is set by an apply that signed nothing new: what it would
	// have signed is what revision already carries.
	Unchanged bool `json:"unchanged,omitempty"`
	// Warnings are what the policy may not do as meant (policy.Advice).
	Warnings []string `json:"warnings,omitempty"`
}

// itemsJSON renders items with protobuf's JSON mapping (oneofs flattened).
func itemsJSON(items []*wire.Item) []json.RawMessage {
	out := []json.RawMessage{}
	for _, it := range items {
		if len(it.GetArtifact().GetChunkSha256()) > 0 {
			// The chunk hashes are for agents (signed, in the policy);
			// a person reading the policy is shown chunk_size only.
			it = proto.Clone(it).(*wire.Item)
			it.Artifact.ChunkSha256 = nil
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(it)
		if err == nil {
			out = append(out, b)
		}
	}
	return out
}

// artifactLookup lets the policy compiler see uploaded artifacts.
type artifactLookup struct{ s *store.Store }

func (l artifactLookup) Artifact(sha string) (int64, string, bool, error) {
	a, err := l.s.Artifact(sha)
	if errors.Is(err, store.ErrNotFound) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, err
	}
	return a.Size, a.Name, true, nil
}

// Chunks makes the policy compiler put an artifact's chunk hashes into
// the signed policy (policy.ChunkLookup).
func (l artifactLookup) Chunks(sha string) (int64, []byte, error) {
	a, err := l.s.Artifact(sha)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return a.ChunkSize, a.Chunks, nil
}

// applyPolicy replaces an office's own policy and signs a new revision —
// unless what it would sign (the office-wide policy and every variant:
// items, patches, access lists, keys) is what the current revision carries
// already, as when an admin applies the same file again: then it answers
// the current revision with "unchanged" and no agent is told anything
// (a YAML text that differs only in comments or layout replaces the stored
// one, the revision stays). ?force=true signs a new revision anyway.
func (a *API) applyPolicy(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	if _, err := a.d.Store.Office(office); err != nil {
		return err
	}
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return err
	}
	a.artifactsMu.RLock()
	defer a.artifactsMu.RUnlock()
	items, err := policy.Compile(src, artifactLookup{a.d.Store})
	if err != nil {
		return err
	}
	// The office's own policy is the office-level policy "office:NAME":
	// it may not conflict with named policies that target the office.
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	sc.offices[office] = items
	cs, err := sc.conflicts(officeSource(office))
	if err != nil {
		return err
	}
	if err := refuseConflicts("the policy of office "+office, cs); err != nil {
		return err
	}
	pr, err := a.prepareLocked(sc, office, string(src))
	if err != nil {
		return err
	}
	if !force {
		cur, err := a.currentIfSame(pr)
		if err != nil {
			return err
		}
		if cur != nil {
			if cur.YAML != pr.pub.YAML {
				if cur, err = a.d.Store.SetPolicyYAML(office, cur.Revision, pr.pub.YAML); err != nil {
					return err
				}
			}
			a.log.Info("policy applied unchanged", "office", office, "revision", cur.Revision, "items", len(items))
			a.audit(r, "office.policy", "office "+office, fmt.Sprintf("unchanged: revision %d, %s", cur.Revision, plural(len(items), "item")))
			writeJSON(w, http.StatusOK, policyView{Office: office, Revision: cur.Revision, Applied: cur.Applied, YAML: cur.YAML, Items: itemsJSON(pr.wide),
				Variants: variantsOf(cur), Unchanged: true, Warnings: policy.Advice(items)})
			return nil
		}
	}
	p, err := a.publishPrepared(pr)
	if err != nil {
		return err
	}
	a.log.Info("policy applied", "office", office, "revision", p.Revision, "items", len(items))
	a.audit(r, "office.policy", "office "+office, fmt.Sprintf("revision %d, %s", p.Revision, plural(len(items), "item")))
	writeJSON(w, http.StatusOK, policyView{Office: office, Revision: p.Revision, Applied: p.Applied, YAML: p.YAML, Items: itemsJSON(pr.wide), Variants: variantsOf(p),
		Warnings: policy.Advice(items)})
	return nil
}

func (a *API) showPolicy(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	if _, err := a.d.Store.Office(office); err != nil {
		return err
	}
	p, err := a.d.Store.Policy(office)
	if errors.Is(err, store.ErrNotFound) {
		return httpError(http.StatusNotFound, "office %s has no policy yet: apply one with outpost policy apply", office)
	}
	if err != nil {
		return err
	}
	pol, err := decodeSigned(p.Signed)
	if err != nil {
		return fmt.Errorf("decode stored policy of %s: %w", office, err)
	}
	writeJSON(w, http.StatusOK, policyView{Office: office, Revision: p.Revision, Applied: p.Applied, YAML: p.YAML, Items: itemsJSON(pol.GetItems()), Variants: nonNilStrings(pol.GetVariantAgents())})
	return nil
}

// decodeSigned is the policy inside a stored signed policy.
func decodeSigned(signed []byte) (*wire.Policy, error) {
	var sp wire.SignedPolicy
	if err := proto.Unmarshal(signed, &sp); err != nil {
		return nil, err
	}
	var pol wire.Policy
	if err := proto.Unmarshal(sp.GetPolicy(), &pol); err != nil {
		return nil, err
	}
	return &pol, nil
}

// ---- agents

type agentView struct {
	ID        string             `json:"id"`
	Hostname  string             `json:"hostname"`
	Office    string             `json:"office"`
	Home      string             `json:"home"`
	Roaming   bool               `json:"roaming"`
	Role      string             `json:"role"`
	Address   string             `json:"address"`
	Addresses []string           `json:"addresses"`
	LastSeen  time.Time          `json:"last_seen"`
	Connected bool               `json:"connected"`
	Revision  uint64             `json:"revision"`
	Compliant bool               `json:"compliant"`
	Items     []store.ItemStatus `json:"items"`
	Enrolled  time.Time          `json:"enrolled"`
	Version   string             `json:"version"`
	// UpgradeProblem is why the agent runs on its version when a new one
	// was put in place of its executable; empty when nothing was refused.
	UpgradeProblem string `json:"upgrade_problem,omitempty"`
	// LastHang is when the agent last restarted itself because it made
	// no progress, and what was stuck; said for a week after.
	LastHang string            `json:"last_hang,omitempty"`
	Labels   map[string]string `json:"labels"`
	// Reboot: the items whose change waits for the host to reboot, and
	// since when (its last run's report says so).
	Reboot *rebootView `json:"reboot,omitempty"`
}

type rebootView struct {
	Items []string  `json:"items"`
	Since time.Time `json:"since"`
}

func (a *API) agentView(m *store.Member, current map[string]uint64) agentView {
	v := agentView{ID: m.ID, Hostname: m.Hostname, Office: m.Office, Home: m.Home, Roaming: m.Roaming, Role: m.Role, Address: m.Address,
		Addresses: m.Addresses, LastSeen: m.LastSeen, Revision: m.Revision, Enrolled: m.Enrolled, Version: m.Version,
		UpgradeProblem: m.UpgradeProblem, LastHang: m.LastHang, Items: []store.ItemStatus{}, Labels: m.Labels}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Addresses == nil {
		v.Addresses = []string{}
	}
	if a.d.Presence != nil {
		v.Connected = a.d.Presence.Connected(m.ID)
	}
	want, hasPolicy := current[m.Office]
	if m.Report != nil {
		v.Items = m.Report.Items
		if len(m.Report.RebootItems) > 0 {
			v.Reboot = &rebootView{Items: m.Report.RebootItems, Since: m.Report.RebootSince}
		}
	}
	switch {
	case !hasPolicy:
		v.Compliant = true // nothing is asked of it
	case m.Role == "relay":
		v.Compliant = m.Revision >= want // it holds the office's policy, to pin and stage what it names
	case currentReport(m, want) != nil:
		v.Compliant = true
		for _, it := range m.Report.Items {
			if it.Status != "compliant" && it.Status != "not_applicable" {
				v.Compliant = false
			}
		}
	}
	return v
}

func (a *API) revisions() (map[string]uint64, error) {
	offices, err := a.d.Store.Offices()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, o := range offices {
		p, err := a.d.Store.Policy(o.Name)
		if err == nil {
			out[o.Name] = p.Revision
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return out, nil
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) error {
	office := r.URL.Query().Get("office")
	if office != "" {
		if _, err := a.d.Store.Office(office); err != nil {
			return err
		}
	}
	members, err := a.d.Store.Members(office)
	if err != nil {
		return err
	}
	current, err := a.revisions()
	if err != nil {
		return err
	}
	sort.Slice(members, func(i, j int) bool {
		if members[i].Office != members[j].Office {
			return members[i].Office < members[j].Office
		}
		return members[i].Hostname < members[j].Hostname
	})
	out := []agentView{}
	for i := range members {
		out = append(out, a.agentView(&members[i], current))
	}
	if out, err = filterAgents(r.URL.Query(), out, time.Now()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
	return nil
}

func (a *API) showAgent(w http.ResponseWriter, r *http.Request) error {
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return err
	}
	current, err := a.revisions()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.agentView(m, current))
	return nil
}

// ---- artifacts

var artifactName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$`)
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (a *API) uploadArtifact(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	if !artifactName.MatchString(name) {
		return httpError(http.StatusBadRequest, "artifact name %q: use letters, digits, '.', '_', '+' and '-' (at most 200), e.g. ?name=hello-1.0.0.tar.gz", name)
	}
	if a.d.Files == nil {
		return httpError(http.StatusServiceUnavailable, "no file server is configured on the coordinator")
	}
	// Chunk hashes are taken on the way, like the whole hash: the bytes
	// are never held here.
	chunks := wire.NewChunkHasher(wire.DefaultChunkSize)
	body := newUploadBody(w, r.Body, a.d.UploadIdle)
	body.start()
	defer body.finish(a.d.BodyWait)
	sha, n, err := a.d.Files.Upload(r.Context(), io.TeeReader(body, chunks), r.ContentLength)
	if failed := body.failure(); failed != nil {
		// The client's doing (gone, cut short, stalled), whatever the file
		// server made of it; bytes stored all the same are named by nothing.
		a.log.Info("artifact upload failed on the client's side", "name", name, "err", failed)
		return failed
	}
	if err != nil {
		var tl *artifacts.TooLargeError
		if errors.As(err, &tl) {
			// The uploader's to fix, not a fault of the file server.
			return httpError(http.StatusRequestEntityTooLarge, "%v", err)
		}
		return httpError(http.StatusBadGateway, "upload to the file server failed: %v", err)
	}
	// A removal of the same content may have run while the bytes went up;
	// the record is kept only if the bytes are still there.
	a.artifactsMu.RLock()
	defer a.artifactsMu.RUnlock()
	if _, there, err := a.d.Files.Stat(r.Context(), sha); err != nil {
		return httpError(http.StatusBadGateway, "upload to the file server: %v", err)
	} else if !there {
		return httpError(http.StatusConflict, "artifact %s was removed while it was uploaded; push it again", sha[:12])
	}
	rec := store.Artifact{SHA256: sha, Size: n, Name: name, Uploaded: time.Now().UTC()}
	if hashed, sums := chunks.Sum(); hashed == n && wire.ChunkCount(n, wire.DefaultChunkSize) <= wire.MaxChunks {
		rec.ChunkSize, rec.Chunks = wire.DefaultChunkSize, sums
	}
	art, err := a.d.Store.PutArtifact(rec)
	if err != nil {
		return err
	}
	a.log.Info("artifact uploaded", "sha256", sha, "size", n, "name", name, "chunks", len(art.Chunks)/32)
	a.audit(r, "artifact.upload", "artifact "+sha, fmt.Sprintf("%s, %d bytes", name, n))
	v := newArtifactView(art)
	code := http.StatusCreated
	if !art.Uploaded.Equal(rec.Uploaded) {
		// The same bytes were there: the first upload's record stands.
		v.AlreadyStored, code = true, http.StatusOK
	}
	writeJSON(w, code, v)
	return nil
}

func (a *API) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	arts, err := a.d.Store.Artifacts()
	if err != nil {
		return err
	}
	sort.Slice(arts, func(i, j int) bool { return arts[i].Uploaded.Before(arts[j].Uploaded) })
	views := []artifactView{}
	for i := range arts {
		views = append(views, newArtifactView(&arts[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"artifacts": views})
	return nil
}

func (a *API) showArtifact(w http.ResponseWriter, r *http.Request) error {
	sha := strings.TrimPrefix(r.PathValue("sha256"), "sha256:")
	if !sha256Hex.MatchString(sha) {
		return httpError(http.StatusBadRequest, "%q is not a SHA-256 (64 lower-case hex digits)", sha)
	}
	art, err := a.d.Store.Artifact(sha)
	if err != nil {
		return err
	}
	v := newArtifactView(art)
	figures, err := a.d.Store.ArtifactBytesOf(sha)
	if err != nil {
		return err
	}
	v.Fetched = fetchedBytes(figures)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// isStatus says whether err is an httpError with that status.
func isStatus(err error, code int) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == code
}

// plural is "1 item" or "n items".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
