// Package store keeps the coordinator's state: offices, enrollment tokens,
// members (agents and relays), policies with their signed revisions, and
// artifact records. The default is one embedded bbolt file; every write is
// one transaction, so a crash loses nothing that was acknowledged. It knows
// nothing of HTTP or QUIC.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/didyoumean"
	bolt "go.etcd.io/bbolt"
)

// Errors callers map to answers.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("conflict")
)

var (
	bOffices   = []byte("offices")
	bTokens    = []byte("tokens")
	bMembers   = []byte("members")
	bPolicies  = []byte("policies")
	bRevisions = []byte("revisions") // office name → last issued revision; outlives the office
	bArtifacts = []byte("artifacts")
)

// Office is a remote office: a group of computers and how they reach content.
type Office struct {
	Name            string        `json:"name"`
	Description     string        `json:"description"`
	Location        string        `json:"location"`
	Mode            string        `json:"mode"`
	Relays          []string      `json:"relays"`
	CheckinInterval time.Duration `json:"checkin_interval"`
	TimeZone        string        `json:"time_zone"` // IANA name; deployment windows are in it
	// Subnets are the address ranges the office owns: an agent seen
	// connecting from inside one, or reporting an address inside one
	// while seen at one of Egress, is placed in this office.
	Subnets []string `json:"subnets"`
	// Egress are the addresses the office's computers reach the
	// coordinator from (its NAT), as the coordinator sees them.
	Egress []string `json:"egress,omitempty"`
	// AllowPlainHTTP lets relay URLs be plain http://. nil: an office
	// stored before the setting existed, which keeps plain HTTP allowed.
	AllowPlainHTTP *bool `json:"allow_plain_http,omitempty"`
	// DistributionServer is host:port of the relay that pre-stages the
	// office's content in mode distribution.
	DistributionServer string `json:"distribution_server,omitempty"`
	GossipKey          []byte `json:"gossip_key"`
	// GossipKeys are accepted besides GossipKey while it is rotated.
	GossipKeys    [][]byte  `json:"gossip_keys,omitempty"`
	Rotation      string    `json:"rotation,omitempty"` // the phase of a key rotation under way
	RotationSince time.Time `json:"rotation_since,omitempty"`
	Created       time.Time `json:"created"`
}

// Token is an enrollment token. Only the SHA-256 of its secret is kept.
type Token struct {
	ID      string    `json:"id"`
	Hash    string    `json:"hash"`
	Office  string    `json:"office"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
	Created time.Time `json:"created"`
	// Revoked is when an admin revoked it; zero while it is not.
	Revoked time.Time `json:"revoked,omitzero"`
}

// TokenKeep is how long a token that can enrol nothing more (expired or
// revoked) is kept and listed before it is deleted: long enough to read
// what became of it, and for a member whose enrolment answer was lost to
// retry (EnrollAgain).
const TokenKeep = 30 * 24 * time.Hour

// gone says whether t ended (expired or was revoked) before cutoff.
func (t *Token) gone(cutoff time.Time) bool {
	return t.Expires.Before(cutoff) || !t.Revoked.IsZero() && t.Revoked.Before(cutoff)
}

// ItemStatus is one item of a member's last report.
type ItemStatus struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status"`
	Message string    `json:"message,omitempty"`
	Changed bool      `json:"changed,omitempty"`
	At      time.Time `json:"at"`
}

// Report is the outcome of a member's last run.
type Report struct {
	Revision uint64       `json:"revision"`
	At       time.Time    `json:"at"`
	Items    []ItemStatus `json:"items"`
	Seq      uint64       `json:"seq,omitempty"` // the agent's run number
	// RebootItems wait for the host to reboot, since RebootSince.
	RebootItems []string  `json:"reboot_items,omitempty"`
	RebootSince time.Time `json:"reboot_since,omitzero"`
}

// Member is an enrolled agent or relay.
type Member struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	Office   string `json:"office"` // where it is now: placement by subnet, else Home
	// Home is the office it enrolled in or was moved to by hand; its policy
	// applies wherever no office's subnet matches.
	Home       string    `json:"home"`
	Roaming    bool      `json:"roaming"` // outside every office's ranges, home included
	Role       string    `json:"role"`
	Enrolled   time.Time `json:"enrolled"`
	LastSeen   time.Time `json:"last_seen"`
	Address    string    `json:"address"`
	Addresses  []string  `json:"addresses"`
	GossipAddr string    `json:"gossip_addr"`
	ServeURL   string    `json:"serve_url"`
	// SessionAddr is where the agent takes direct technician sessions
	// (host:port; an unspecified host means each of its addresses); empty
	// when it takes none.
	SessionAddr string `json:"session_addr,omitempty"`
	Revision    uint64 `json:"revision"`
	Version     string `json:"version"`
	// UpgradeProblem is why the agent did not restart into a new version
	// of itself found in place of its executable, as its last check-in
	// said; empty when nothing was refused.
	UpgradeProblem string `json:"upgrade_problem,omitempty"`
	// LastHang is when the agent last restarted itself because it made
	// no progress, and what was stuck, as its check-ins say for a week
	// after; empty when it has not.
	LastHang string `json:"last_hang,omitempty"`
	// CAFingerprint is the fingerprint of the newest certificate of the
	// coordinator's CA the member holds, as its last check-in said (empty:
	// it did not say, an older version): after a renewal of the CA's
	// certificate, who has learned the new one.
	CAFingerprint string  `json:"ca_fingerprint,omitempty"`
	Report        *Report `json:"report,omitempty"`
	// Backlog is runs an agent sends besides its newest; never stored.
	Backlog []Report `json:"-"`
	// AckedSeq is the highest run number kept.
	AckedSeq uint64 `json:"acked_seq,omitempty"`
	// Labels are set by admins; named policies target them. A plain
	// label has the value "".
	Labels map[string]string `json:"labels,omitempty"`
	// KeyHash is the SHA-256 of the public key the member enrolled with,
	// and Token the id of the token it used: the same key with the same
	// token again is a retry, not a new member.
	KeyHash string `json:"key_hash,omitempty"`
	Token   string `json:"token,omitempty"`
	// Staging is a relay's last report of pre-staging (release.go).
	Staging *Staging `json:"staging,omitempty"`
	// RolledUpSigned is when the member signed the last check-in of its
	// that a roll-up member brought and that was kept (the member's
	// clock), and DirectAt when its last direct check-in arrived (the
	// coordinator's): a rolled-up check-in older than what was kept is a
	// replay. Zero: unknown (none since these were recorded).
	RolledUpSigned time.Time `json:"rolled_up_signed,omitzero"`
	DirectAt       time.Time `json:"direct_at,omitzero"`
}

// Policy is an office's current policy.
type Policy struct {
	Office   string    `json:"office"`
	Revision uint64    `json:"revision"`
	YAML     string    `json:"yaml"`
	Applied  time.Time `json:"applied"`
	Signed   []byte    `json:"signed"` // a serialized wire.SignedPolicy
}

// Artifact is a record of content uploaded to the file server.
type Artifact struct {
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Name     string    `json:"name"`
	Uploaded time.Time `json:"uploaded"`
	// ChunkSize and Chunks (the SHA-256 of each chunk, concatenated) let
	// agents fetch the artifact in pieces from several office peers; empty
	// for artifacts uploaded before chunks existed.
	ChunkSize int64  `json:"chunk_size,omitempty"`
	Chunks    []byte `json:"chunks,omitempty"`
}

// Store is the embedded bbolt store.
type Store struct {
	db *bolt.DB
	// changes and offices keep what every check-in reads (cache.go).
	changes changes
	offices atomic.Pointer[officeCache]
	// members summarizes every member for seeds and metrics (memberstate.go).
	members memberState
}

// Open opens (creating if needed) the store file at path.
func Open(path string) (*Store, error) {
	// The list of free pages is not written at each commit but found
	// again at open (a scan of the file): written, it costs every write
	// as much as the store ever freed (pruned audit events, removed
	// members), 400 KB a commit once 200 MB were freed, for good. The map
	// freelist allocates without sorting every free page.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another coordinator using this data directory?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bOffices, bTokens, bMembers, bPolicies, bRevisions, bArtifacts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := indexMembers(tx); err != nil {
			return err
		}
		return indexTokens(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db}
	openStores.Store(db, s)
	return s, nil
}

// Close releases the file.
func (s *Store) Close() error {
	openStores.Delete(s.db)
	return s.db.Close()
}

func get[T any](tx *bolt.Tx, bucket []byte, key string) (*T, error) {
	v := tx.Bucket(bucket).Get([]byte(key))
	if v == nil {
		return nil, ErrNotFound
	}
	var t T
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return &t, nil
}

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	changed(tx, bucket)
	return tx.Bucket(bucket).Put([]byte(key), b)
}

func list[T any](tx *bolt.Tx, bucket []byte, keep func(*T) bool) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		if keep == nil || keep(&t) {
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// CreateOffice adds an office; ErrExists if the name is taken.
func (s *Store) CreateOffice(o Office) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(o.Name)) != nil {
			return fmt.Errorf("office %s: %w", o.Name, ErrExists)
		}
		return put(tx, bOffices, o.Name, o)
	})
}

// UpdateOffice changes an office in place with fn.
func (s *Store) UpdateOffice(name string, fn func(*Office) error) (*Office, error) {
	var out *Office
	err := s.db.Update(func(tx *bolt.Tx) error {
		o, err := get[Office](tx, bOffices, name)
		if err != nil {
			return fmt.Errorf("office %s: %w", name, err)
		}
		if err := fn(o); err != nil {
			return err
		}
		o.Name = name
		out = o
		return put(tx, bOffices, name, o)
	})
	return out, err
}

// Office returns one office, the caller's to change.
func (s *Store) Office(name string) (*Office, error) {
	c, err := s.cachedOffices()
	if err != nil {
		return nil, err
	}
	o, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("office %s: %w", name, ErrNotFound)
	}
	out := o.clone()
	return &out, nil
}

// Offices lists every office, by name, the caller's to change
// (OfficesReadOnly shares them).
func (s *Store) Offices() ([]Office, error) {
	c, err := s.cachedOffices()
	if err != nil || c.list == nil {
		return nil, err
	}
	out := make([]Office, len(c.list))
	for i := range c.list {
		out[i] = c.list[i].clone()
	}
	return out, nil
}

// DeleteOffice removes an office that no member is in or has as home;
// RemoveOffice can move them first.
func (s *Store) DeleteOffice(name string) error {
	_, err := s.RemoveOffice(name, "")
	return err
}

// CreateToken stores a new enrollment token for an existing office. Tokens
// of any office that ended more than TokenKeep before t was created are
// deleted in the same step: creating tokens is what makes them pile up.
func (s *Store) CreateToken(t Token) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(t.Office)) == nil {
			return fmt.Errorf("office %s: %w", t.Office, ErrNotFound)
		}
		old, err := list[Token](tx, bTokens, func(o *Token) bool { return o.gone(t.Created.Add(-TokenKeep)) })
		if err != nil {
			return err
		}
		for i := range old {
			if err := deleteToken(tx, &old[i]); err != nil {
				return err
			}
		}
		if tx.Bucket(bTokens).Get([]byte(t.ID)) != nil {
			return fmt.Errorf("token %s: %w", t.ID, ErrExists)
		}
		return putToken(tx, &t)
	})
}

// RevokeToken makes an office's token enrol nothing more. Members that
// enrolled with it stay. Revoking it again changes nothing; ErrNotFound
// when the office has no such token.
func (s *Store) RevokeToken(office, id string, now time.Time) (*Token, error) {
	var out *Token
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		t, err := get[Token](tx, bTokens, id)
		if errors.Is(err, ErrNotFound) || err == nil && t.Office != office {
			return fmt.Errorf("token %s of office %s: %w", id, office, ErrNotFound)
		}
		if err != nil {
			return err
		}
		out = t
		if !t.Revoked.IsZero() {
			return nil
		}
		t.Revoked = now.UTC().Truncate(time.Second)
		return putToken(tx, t)
	})
	return out, err
}

// Tokens lists the tokens of an office.
func (s *Store) Tokens(office string) ([]Token, error) {
	var out []Token
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Token](tx, bTokens, func(t *Token) bool { return t.Office == office })
		return err
	})
	return out, err
}

// EnrollError says why a token was refused. Its message is safe to show the
// enrolling member.
type EnrollError struct{ Reason string }

func (e *EnrollError) Error() string { return e.Reason }

// Enroll consumes one use of the token whose secret hashes to hash and, in
// the same transaction, stores the member that issue returns. A crash
// leaves either both or neither.
func (s *Store) Enroll(hash string, now time.Time, issue func(Token, Office) (Member, error)) (*Member, *Office, error) {
	var member *Member
	var office *Office
	err := s.db.Update(func(tx *bolt.Tx) error {
		t, err := tokenByHash(tx, hash)
		if errors.Is(err, ErrNotFound) {
			return &EnrollError{"enrollment token is not known: ask an admin for a new one (outpost token create)"}
		}
		if err != nil {
			return err
		}
		switch {
		case !t.Revoked.IsZero():
			return &EnrollError{fmt.Sprintf("enrollment token %s was revoked at %s: ask an admin for a new one", t.ID, t.Revoked.UTC().Format(time.RFC3339))}
		case now.After(t.Expires):
			return &EnrollError{fmt.Sprintf("enrollment token %s expired at %s: ask an admin for a new one", t.ID, t.Expires.UTC().Format(time.RFC3339))}
		case t.Used >= t.Uses:
			return &EnrollError{fmt.Sprintf("enrollment token %s has been used %d of %d times: ask an admin for a new one", t.ID, t.Used, t.Uses)}
		}
		office, err = get[Office](tx, bOffices, t.Office)
		if err != nil {
			return &EnrollError{fmt.Sprintf("the office of enrollment token %s no longer exists", t.ID)}
		}
		m, err := issue(*t, *office)
		if err != nil {
			return err
		}
		// A hostname an admin put in an office goes there, whatever
		// office the token is for (computers.go).
		if o, err := steerPreregistered(tx, &m, now); err != nil {
			return err
		} else if o != nil {
			office = o
		}
		t.Used++
		if err := putToken(tx, t); err != nil {
			return err
		}
		member = &m
		return putMember(tx, &m)
	})
	return member, office, err
}

// EnrollAgain finds the member that enrolled with the token whose hash is
// given and with the public key whose hash is keyHash: a member retrying
// an enrolment whose answer it never got. The token's expiry and uses do
// not apply — the use was spent on this very member. ErrNotFound if there
// is none.
func (s *Store) EnrollAgain(hash, keyHash string) (*Member, *Office, error) {
	var member *Member
	var office *Office
	err := s.db.View(func(tx *bolt.Tx) error {
		t, err := tokenByHash(tx, hash)
		if err != nil {
			return ErrNotFound
		}
		ms, err := list[Member](tx, bMembers, func(m *Member) bool { return m.KeyHash == keyHash && m.Token == t.ID })
		if err != nil || len(ms) != 1 {
			return ErrNotFound
		}
		member = &ms[0]
		office, err = get[Office](tx, bOffices, member.Office)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return member, office, nil
}

// UpdateMember changes a member in place with fn.
//
// Check-ins of a whole office arrive together after a push: Batch lets
// concurrent updates share one transaction and one fsync. fn may run more
// than once, so it must only set fields.
func (s *Store) UpdateMember(id string, fn func(*Member)) (*Member, error) {
	return s.UpdateMemberIf(id, func(m *Member) error { fn(m); return nil })
}

// UpdateMemberIf is UpdateMember with a fn that may refuse the change:
// its error is returned and nothing is written. The decision is taken on
// the member as stored in the same transaction, so two check-ins of one
// member at once cannot both pass a check meant for one.
func (s *Store) UpdateMemberIf(id string, fn func(*Member) error) (*Member, error) {
	var out *Member
	err := s.db.Batch(func(tx *bolt.Tx) error {
		m, err := get[Member](tx, bMembers, id)
		if err != nil {
			return fmt.Errorf("member %s: %w", id, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		out = m
		// Keep the last runs (compliance history): the backlog an agent
		// kept while offline, then its newest. A run with a number is kept
		// once however often it is sent.
		runs := m.Backlog
		if m.Report != nil {
			runs = append(runs, *m.Report)
		}
		m.Backlog = nil
		for _, r := range runs {
			if r.Seq != 0 {
				if r.Seq <= m.AckedSeq {
					continue
				}
				m.AckedSeq = r.Seq
			}
			if err := appendRun(tx, id, r); err != nil {
				return err
			}
		}
		return putMember(tx, m)
	})
	return out, err
}

// Member returns one member.
func (s *Store) Member(id string) (*Member, error) {
	var out *Member
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = get[Member](tx, bMembers, id)
		if err != nil {
			return fmt.Errorf("member %s: %w", id, err)
		}
		return nil
	})
	return out, err
}

// MatchMembers finds the members name names: the member whose id it is,
// else the agents that have it as hostname (in any case), else, for the
// start of an id (ag- or rl- and 4 or more characters, or 4 or more of its
// hex digits alone), the members whose id starts so. byHostname says
// which of the last two matched.
func (s *Store) MatchMembers(name string) (found []Member, byHostname bool, err error) {
	if m, err := s.Member(name); err == nil {
		return []Member{*m}, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	members, err := s.Members("")
	if err != nil {
		return nil, false, err
	}
	for _, m := range members {
		if m.Role == "agent" && strings.EqualFold(m.Hostname, name) {
			found = append(found, m)
		}
	}
	if len(found) > 0 {
		return found, true, nil
	}
	if len(name) >= len("ag-")+4 && (strings.HasPrefix(name, "ag-") || strings.HasPrefix(name, "rl-")) {
		// The start of an id, as people copy it from a narrow table.
		for _, m := range members {
			if strings.HasPrefix(m.ID, name) {
				found = append(found, m)
			}
		}
	} else if len(name) >= 4 && len(name) <= 16 && strings.Trim(strings.ToLower(name), "0123456789abcdef") == "" {
		// Its hex digits alone, without ag- or rl-.
		for _, m := range members {
			if _, hex, ok := strings.Cut(m.ID, "-"); ok && strings.HasPrefix(hex, strings.ToLower(name)) {
				found = append(found, m)
			}
		}
	}
	return found, false, nil
}

// FindHost resolves a host a technician names (MatchMembers, agents only).
func (s *Store) FindHost(host string) (*Member, error) {
	return s.findHost(host, "enrolled host", "hosts", nil)
}

// findHost is FindHost among the agents keep keeps (nil: every one), with
// one and many such hosts named as one and many.
func (s *Store) findHost(host, one, many string, keep func(Member) (bool, error)) (*Member, error) {
	if host == "" {
		return nil, errors.New("name a host: its member id (ag-...) or its hostname")
	}
	found, byHostname, err := s.MatchMembers(host)
	if err != nil {
		return nil, err
	}
	var kept []Member
	for _, m := range found {
		if m.Role != "agent" {
			continue
		}
		if keep != nil {
			if ok, err := keep(m); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
		}
		kept = append(kept, m)
	}
	switch {
	case len(kept) == 1:
		return &kept[0], nil
	case len(kept) == 0:
		return nil, fmt.Errorf("no %s is called %q%s: %w", one, host, s.nearHost(host, keep), ErrNotFound)
	case byHostname:
		return nil, fmt.Errorf("%d %s are called %q: name one by its member id: %w", len(kept), many, host, ErrConflict)
	}
	return nil, fmt.Errorf("%d %s have an id starting with %q: name one by its whole id: %w", len(kept), many, host, ErrConflict)
}

// nearHost is ` (did you mean "x"?)` for the hostname of an agent that
// keep keeps (nil: any) and that host is a typo of, else "".
func (s *Store) nearHost(host string, keep func(Member) (bool, error)) string {
	if len(host) > 253 {
		return ""
	}
	members, err := s.Members("")
	if err != nil {
		return ""
	}
	var near []string
	for _, m := range members {
		if m.Role != "agent" || didyoumean.Distance(strings.ToLower(host), strings.ToLower(m.Hostname)) > 2 {
			continue
		}
		if keep != nil {
			if ok, err := keep(m); err != nil || !ok {
				continue
			}
		}
		near = append(near, m.Hostname)
	}
	return didyoumean.Hint(host, near)
}

// Members lists members, of one office when office is not empty.
func (s *Store) Members(office string) ([]Member, error) {
	var out []Member
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if office != "" {
			out, err = officeMembers(tx, office)
			return err
		}
		out, err = list[Member](tx, bMembers, nil)
		return err
	})
	return out, err
}

// ApplyPolicy stores the office's next policy. build receives the new
// revision — always above every revision this office name ever had — and
// returns the signed bytes.
func (s *Store) ApplyPolicy(office, yaml string, now time.Time, build func(revision uint64) ([]byte, error)) (*Policy, error) {
	return s.PublishPolicy(office, yaml, now, func(rev uint64) ([]byte, map[string][]byte, error) {
		b, err := build(rev)
		return b, nil, err
	})
}

// PublishPolicy is ApplyPolicy for an office some of whose members have a
// policy of their own (variants.go): build also returns the signed variant
// of each such member at the new revision, by member id. They replace the
// office's variants of earlier revisions in the same transaction.
func (s *Store) PublishPolicy(office, yaml string, now time.Time, build func(revision uint64) ([]byte, map[string][]byte, error)) (*Policy, error) {
	out, err := s.PublishPolicies([]Publication{{Office: office, YAML: yaml, Build: build}}, now)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Publication is one office's next policy for PublishPolicies.
type Publication struct {
	Office, YAML string
	// Build returns the signed policy at the revision given, and the
	// signed variants by member id (see PublishPolicy).
	Build func(revision uint64) ([]byte, map[string][]byte, error)
}

// PublishPolicies is PublishPolicy for several offices in one
// transaction: a change that reaches many offices is stored for all of
// them or for none, with one write to the disk.
func (s *Store) PublishPolicies(pubs []Publication, now time.Time) (out []*Policy, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		out, err = publish(tx, pubs, now)
		return err
	})
	return out, err
}

func publish(tx *bolt.Tx, pubs []Publication, now time.Time) ([]*Policy, error) {
	var out []*Policy
	for _, pub := range pubs {
		office := pub.Office
		if tx.Bucket(bOffices).Get([]byte(office)) == nil {
			return nil, fmt.Errorf("office %s: %w", office, ErrNotFound)
		}
		var rev uint64
		if v := tx.Bucket(bRevisions).Get([]byte(office)); v != nil {
			if err := json.Unmarshal(v, &rev); err != nil {
				return nil, fmt.Errorf("decode revision of %s: %w", office, err)
			}
		}
		rev++
		signed, variants, err := pub.Build(rev)
		if err != nil {
			return nil, err
		}
		p := &Policy{Office: office, Revision: rev, YAML: pub.YAML, Applied: now, Signed: signed}
		if err := put(tx, bRevisions, office, rev); err != nil {
			return nil, err
		}
		if err := putVariants(tx, office, rev, variants); err != nil {
			return nil, err
		}
		if err := put(tx, bPolicies, office, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Policy returns an office's current policy.
// HasPolicy says whether the office has a policy, without reading it.
func (s *Store) HasPolicy(office string) (bool, error) {
	var has bool
	err := s.db.View(func(tx *bolt.Tx) error {
		has = tx.Bucket(bPolicies).Get([]byte(office)) != nil
		return nil
	})
	return has, err
}

func (s *Store) Policy(office string) (*Policy, error) {
	var out *Policy
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = get[Policy](tx, bPolicies, office)
		if err != nil {
			return fmt.Errorf("policy of office %s: %w", office, err)
		}
		return nil
	})
	return out, err
}

// SetPolicyYAML replaces the YAML text of the office's current policy,
// which must still be at revision rev, and keeps its revision, signed
// bytes and variants: for an apply whose text differs from the current
// one's (comments, layout) but that signs the same policy.
func (s *Store) SetPolicyYAML(office string, rev uint64, yaml string) (*Policy, error) {
	var out *Policy
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		if out, err = get[Policy](tx, bPolicies, office); err != nil {
			return fmt.Errorf("policy of office %s: %w", office, err)
		}
		if out.Revision != rev {
			return fmt.Errorf("policy of office %s is at revision %d, not %d", office, out.Revision, rev)
		}
		out.YAML = yaml
		return put(tx, bPolicies, office, out)
	})
	return out, err
}

// PutArtifact records an uploaded artifact (idempotent: the first upload
// time is kept).
func (s *Store) PutArtifact(a Artifact) (*Artifact, error) {
	out := &a
	err := s.db.Update(func(tx *bolt.Tx) error {
		if old, err := get[Artifact](tx, bArtifacts, a.SHA256); err == nil {
			out = old
			if len(old.Chunks) > 0 || len(a.Chunks) == 0 {
				return nil
			}
			// Uploaded again after chunks came: the record gains them.
			old.ChunkSize, old.Chunks = a.ChunkSize, a.Chunks
			return put(tx, bArtifacts, a.SHA256, *old)
		}
		return put(tx, bArtifacts, a.SHA256, a)
	})
	return out, err
}

// Artifact returns one artifact record.
func (s *Store) Artifact(sha string) (*Artifact, error) {
	var out *Artifact
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = get[Artifact](tx, bArtifacts, sha)
		if err != nil {
			return fmt.Errorf("artifact %s: %w", sha, err)
		}
		return nil
	})
	return out, err
}

// DeleteArtifact removes an artifact's record and every agent's figures
// for it, in one step; ErrNotFound when there is no record.
func (s *Store) DeleteArtifact(sha string) (*Artifact, error) {
	var out *Artifact
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		if out, err = get[Artifact](tx, bArtifacts, sha); err != nil {
			return fmt.Errorf("artifact %s: %w", sha, err)
		}
		if err := tx.Bucket(bArtifacts).Delete([]byte(sha)); err != nil {
			return err
		}
		return deleteArtifactBytesFor(tx, sha)
	})
	return out, err
}

// Artifacts lists every artifact record.
func (s *Store) Artifacts() ([]Artifact, error) {
	var out []Artifact
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Artifact](tx, bArtifacts, nil)
		return err
	})
	return out, err
}

// PlainHTTPAllowed reports whether the office's relays may serve plain
// HTTP.
func (o *Office) PlainHTTPAllowed() bool { return o.AllowPlainHTTP == nil || *o.AllowPlainHTTP }

// RelayURLs are the base URLs the office's agents fetch from, in order of
// preference: the distribution server first in mode distribution.
func (o *Office) RelayURLs() []string {
	var out []string
	if o.Mode == "distribution" && o.DistributionServer != "" {
		out = append(out, o.DistributionURL())
	}
	return append(out, o.Relays...)
}

// DistributionURL is the distribution server's base URL: https:// unless
// the admin gave a full http:// URL.
func (o *Office) DistributionURL() string {
	if strings.Contains(o.DistributionServer, "://") {
		return o.DistributionServer
	}
	return "https://" + o.DistributionServer
}
