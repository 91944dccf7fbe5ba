package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/policy"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// Endpoint scope. A named policy targets any mix of offices, agents (by id
// or hostname) and labels; an office's own policy (PUT
// /v1/offices/{name}/policy) is the policy "office:NAME" that targets that
// office. A computer's effective policy is policy.Merge of every policy
// that targets it, each at the level of its most specific matching target
// (agent > label > office), then by priority. Conflicts are refused when a
// policy is applied or a label set, never found later on the hosts.
//
// Delivery: each office still has one revision counter and one signed
// office-wide policy (the merge of its office-level policies), which
// members spread by gossip as before. A member whose effective policy
// differs gets a signed variant of its own at the same revision (Policy.agent
// set), which only the coordinator hands out; the office-wide policy lists
// those members in variant_agents so that they refuse it and fetch their
// own. Without agent or label targeting nothing changes: no variants, an
// empty list, the same bytes per rollout.

func (a *API) scopeRoutes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"PUT /v1/policies/{name}":      a.putNamedPolicy,
		"GET /v1/policies":             a.listNamedPolicies,
		"GET /v1/policies/{name}":      a.showNamedPolicy,
		"DELETE /v1/policies/{name}":   a.deleteNamedPolicy,
		"GET /v1/agents/{id}/policy":   a.effectivePolicy,
		"PATCH /v1/agents/{id}/labels": a.setLabels,
	}
}

// officeSource names an office's own policy among named ones; named
// policies cannot contain a colon.
func officeSource(office string) string { return "office:" + office }

var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// compiledPolicy is a named policy with its items.
type compiledPolicy struct {
	store.NamedPolicy
	items []*wire.Item
}

// scope is what effective policies are computed from: the named policies
// and the offices' own policies, compiled.
type scope struct {
	a       *API
	named   []compiledPolicy // by name
	offices map[string][]*wire.Item
	members *memberCache // shared by the scopes made from this one
}

// memberCache reads the store's members once for a scope: a change that
// publishes every office of a large fleet would otherwise decode all of
// them once per office. The scope lives for one change under a.scopeMu;
// a member that enrols meanwhile is placed (MemberPlaced) after it.
type memberCache struct {
	all      []store.Member // nil until read
	byOffice map[string][]store.Member
}

// allMembers are every enrolled member.
func (sc *scope) allMembers() ([]store.Member, error) {
	c := sc.members
	if c.all == nil {
		all, err := sc.a.d.Store.Members("")
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = []store.Member{} // read, and none
		}
		c.all, c.byOffice = all, map[string][]store.Member{}
		for _, m := range all {
			c.byOffice[m.Office] = append(c.byOffice[m.Office], m)
		}
	}
	return c.all, nil
}

// officeMembers are the members of office.
func (sc *scope) officeMembers(office string) ([]store.Member, error) {
	c := sc.members
	if ms, ok := c.byOffice[office]; ok || c.all != nil {
		return ms, nil
	}
	ms, err := sc.a.d.Store.Members(office)
	if err != nil {
		return nil, err
	}
	if c.byOffice == nil {
		c.byOffice = map[string][]store.Member{}
	}
	c.byOffice[office] = ms
	return ms, nil
}

func (a *API) loadScope() (*scope, error) {
	ps, err := a.d.Store.NamedPolicies()
	if err != nil {
		return nil, err
	}
	sc := &scope{a: a, offices: map[string][]*wire.Item{}, members: &memberCache{}}
	for _, p := range ps {
		n, err := policy.CompileNamed([]byte(p.YAML), artifactLookup{a.d.Store})
		if err != nil {
			return nil, fmt.Errorf("recompile policy %s: %w", p.Name, err)
		}
		sc.named = append(sc.named, compiledPolicy{NamedPolicy: p, items: n.Items})
	}
	sort.Slice(sc.named, func(i, j int) bool { return sc.named[i].Name < sc.named[j].Name })
	return sc, nil
}

// with returns the scope with p in place of the policy of its name.
func (sc *scope) with(p compiledPolicy) *scope {
	out := &scope{a: sc.a, offices: sc.offices, members: sc.members}
	for _, q := range sc.named {
		if q.Name != p.Name {
			out.named = append(out.named, q)
		}
	}
	out.named = append(out.named, p)
	sort.Slice(out.named, func(i, j int) bool { return out.named[i].Name < out.named[j].Name })
	return out
}

// without returns the scope without the named policy name.
func (sc *scope) without(name string) *scope {
	out := &scope{a: sc.a, offices: sc.offices, members: sc.members}
	for _, q := range sc.named {
		if q.Name != name {
			out.named = append(out.named, q)
		}
	}
	return out
}

// officeYAML is an office's own policy as applied ("items: []" for none).
func (a *API) officeYAML(office string) (string, error) {
	p, err := a.d.Store.Policy(office)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "items: []\n", nil
	case err != nil:
		return "", err
	case strings.TrimSpace(p.YAML) == "":
		return "items: []\n", nil
	}
	return p.YAML, nil
}

// officeItems compiles an office's own policy, once per scope.
func (sc *scope) officeItems(office string) ([]*wire.Item, error) {
	if office == "" {
		return nil, nil
	}
	if items, ok := sc.offices[office]; ok {
		return items, nil
	}
	src, err := sc.a.officeYAML(office)
	if err != nil {
		return nil, err
	}
	items, err := policy.Compile([]byte(src), artifactLookup{sc.a.d.Store})
	if err != nil {
		return nil, fmt.Errorf("recompile the policy of %s: %w", office, err)
	}
	sc.offices[office] = items
	return items, nil
}

// matchesAgent tells whether an agents: entry names m: its id, or its
// hostname in any case (a short name matches the first label of a full
// one, as for computers added by name).
func matchesAgent(target string, m *store.Member) bool {
	if target == m.ID && m.ID != "" {
		return true
	}
	if strings.EqualFold(target, m.Hostname) {
		return true
	}
	short, _, ok := strings.Cut(m.Hostname, ".")
	return ok && !strings.Contains(target, ".") && strings.EqualFold(target, short)
}

// matchesLabel tells whether a labels: entry names one of m's labels.
func matchesLabel(target string, labels map[string]string) bool {
	k, v, hasValue := strings.Cut(target, "=")
	have, ok := labels[k]
	return ok && (!hasValue || have == v)
}

// level is the most specific level at which p targets m in office; 0 when
// it does not. m nil asks about the office itself.
func level(t store.Targets, office string, m *store.Member) policy.Level {
	if m != nil {
		for _, x := range t.Agents {
			if matchesAgent(x, m) {
				return policy.LevelAgent
			}
		}
		for _, x := range t.Labels {
			if matchesLabel(x, m.Labels) {
				return policy.LevelLabel
			}
		}
	}
	if office != "" && slices.Contains(t.Offices, office) {
		return policy.LevelOffice
	}
	return 0
}

// sources are the policies that apply to m in office (m nil: to the
// office as a whole, its office-level policies).
func (sc *scope) sources(office string, m *store.Member) ([]policy.Source, error) {
	var out []policy.Source
	items, err := sc.officeItems(office)
	if err != nil {
		return nil, err
	}
	if office != "" {
		out = append(out, policy.Source{Policy: officeSource(office), Level: policy.LevelOffice, Items: items})
	}
	for _, p := range sc.named {
		if l := level(p.Targets, office, m); l != 0 {
			out = append(out, policy.Source{Policy: p.Name, Level: l, Priority: p.Priority, Items: p.items})
		}
	}
	return out, nil
}

func (sc *scope) merge(office string, m *store.Member) (policy.Merged, error) {
	srcs, err := sc.sources(office, m)
	if err != nil {
		return policy.Merged{}, err
	}
	return policy.Merge(srcs), nil
}

// ---- conflicts

// conflictView is a conflict as the API reports it: the policies, the
// item, and where it would bite.
type conflictView struct {
	Item      string       `json:"item"`
	Level     policy.Level `json:"level"`
	Priority  int          `json:"priority"`
	Policies  []string     `json:"policies"`
	Computers []string     `json:"computers"` // hostnames (or the agents: entry of a computer not enrolled yet)
	Offices   []string     `json:"offices,omitempty"`
}

// conflictError refuses a change that would make policies conflict; the
// answer is 409 with every conflict.
type conflictError struct {
	msg       string
	conflicts []conflictView
}

func (e *conflictError) Error() string { return e.msg }

// conflicts finds every conflict that sc has on the offices, the enrolled
// agents and the hostnames named in agents: targets; involving, when not
// empty, keeps those one of whose policies it is.
func (sc *scope) conflicts(involving string) ([]conflictView, error) {
	offices, err := sc.a.d.Store.Offices()
	if err != nil {
		return nil, err
	}
	// Only where the policy applies can it conflict: an office's own
	// policy on its office and members, a named one on its targets. In a
	// large fleet that is a small part of it.
	reaches := func(office string, m *store.Member) bool { return true }
	ownOffice, isOffice := strings.CutPrefix(involving, "office:")
	if isOffice {
		reaches = func(office string, _ *store.Member) bool { return office == ownOffice }
	} else if i := slices.IndexFunc(sc.named, func(p compiledPolicy) bool { return p.Name == involving }); i >= 0 {
		t := sc.named[i].Targets
		reaches = func(office string, m *store.Member) bool { return level(t, office, m) != 0 }
	}
	var members []store.Member
	if isOffice {
		members, err = sc.officeMembers(ownOffice)
	} else {
		members, err = sc.allMembers()
	}
	if err != nil {
		return nil, err
	}
	found := map[string]*conflictView{}
	var keys []string
	add := func(cs []policy.Conflict, computer, office string) {
		for _, c := range cs {
			if involving != "" && !slices.Contains(c.Policies, involving) {
				continue
			}
			key := fmt.Sprintf("%s\x00%d\x00%d\x00%s", c.Item, c.Level, c.Priority, strings.Join(c.Policies, ","))
			v, ok := found[key]
			if !ok {
				v = &conflictView{Item: c.Item, Level: c.Level, Priority: c.Priority, Policies: c.Policies, Computers: []string{}}
				found[key] = v
				keys = append(keys, key)
			}
			if computer != "" && !slices.Contains(v.Computers, computer) {
				v.Computers = append(v.Computers, computer)
			}
			if office != "" && !slices.Contains(v.Offices, office) {
				v.Offices = append(v.Offices, office)
			}
		}
	}
	for _, o := range offices {
		if !reaches(o.Name, nil) {
			continue
		}
		m, err := sc.merge(o.Name, nil)
		if err != nil {
			return nil, err
		}
		add(m.Conflicts, "", o.Name)
	}
	for i := range members {
		m := &members[i]
		if m.Role != "agent" || !reaches(m.Office, m) {
			continue
		}
		merged, err := sc.merge(m.Office, m)
		if err != nil {
			return nil, err
		}
		add(merged.Conflicts, m.Hostname, "")
	}
	// Computers named by hostname that have not enrolled yet (they are
	// in no office, so an office's own policy is not theirs).
	for _, p := range sc.named {
		if isOffice {
			break
		}
		for _, t := range p.Targets.Agents {
			if slices.ContainsFunc(members, func(m store.Member) bool { return matchesAgent(t, &m) }) {
				continue
			}
			merged, err := sc.merge("", &store.Member{Hostname: t})
			if err != nil {
				return nil, err
			}
			add(merged.Conflicts, t, "")
		}
	}
	out := []conflictView{}
	for _, k := range keys {
		v := found[k]
		sort.Strings(v.Computers)
		sort.Strings(v.Offices)
		out = append(out, *v)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Item < out[j].Item })
	return out, nil
}

// refuseConflicts turns conflicts into the error that refuses the change
// that would cause them.
func refuseConflicts(what string, cs []conflictView) error {
	if len(cs) == 0 {
		return nil
	}
	var lines []string
	for i, c := range cs {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("(and %d more conflicts)", len(cs)-i))
			break
		}
		where := "on " + listShort(c.Computers)
		if len(c.Computers) == 0 {
			where = "on the computers of office " + strings.Join(c.Offices, ", ") + " (none enrolled yet)"
		} else if len(c.Offices) > 0 {
			where = "in office " + strings.Join(c.Offices, ", ") + ", " + where
		}
		lines = append(lines, fmt.Sprintf("policies %s set %s differently, both at the %s level with priority %d, %s",
			strings.Join(quoteAll(c.Policies), " and "), c.Item, c.Level, c.Priority, where))
	}
	return &conflictError{conflicts: cs, msg: fmt.Sprintf("%s was not applied: it would conflict with other policies:\n%s\n"+
		"Give one policy a higher priority, target it more narrowly, or set the item the same way in both.",
		what, strings.Join(lines, "\n"))}
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

func listShort(s []string) string {
	if len(s) > 8 {
		return strings.Join(s[:8], ", ") + fmt.Sprintf(" and %d more", len(s)-8)
	}
	return strings.Join(s, ", ")
}

// ---- publishing

// publishLocked signs the office's next revision from sc: the office-wide
// policy (its office-level policies merged, plus its approved and
// report-only patches and its access lists), and a variant for each agent
// in the office whose effective items differ. yaml, when not empty, is the
// office's own policy being applied (sc has it compiled); else the one
// stored. The caller holds a.scopeMu.
func (a *API) publishLocked(sc *scope, office, yaml string) (*store.Policy, []*wire.Item, error) {
	pr, err := a.prepareLocked(sc, office, yaml)
	if err != nil {
		return nil, nil, err
	}
	p, err := a.publishPrepared(pr)
	if err != nil {
		return nil, nil, err
	}
	return p, pr.wide, nil
}

// publishPrepared stores pr as the office's next revision and tells the
// office's members. The caller holds a.scopeMu.
func (a *API) publishPrepared(pr prepared) (*store.Policy, error) {
	ps, err := a.d.Store.PublishPolicies([]store.Publication{pr.pub}, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	a.logPublished(ps[0], pr)
	if a.d.Notifier != nil {
		a.d.Notifier.NotifyRevision(pr.pub.Office, ps[0].Revision)
	}
	return ps[0], nil
}

// prepared is an office's next revision, worked out and not yet stored.
type prepared struct {
	pub      store.Publication
	wide     []*wire.Item // the office-wide items
	variants int          // members with a policy of their own
	// compose is what pub.Build signs: the office-wide policy and each
	// variant (by member id) at a revision and issue time.
	compose func(rev uint64, issued int64) (*wire.Policy, map[string]*wire.Policy)
}

// currentIfSame is the office's current policy when pr would sign the
// same content (policy.SameContent) as it — the office-wide policy and
// every variant, with the same members having one — and nil otherwise:
// re-applying what is in force needs no new revision, which would only
// have every agent of the office run again. The caller holds a.scopeMu.
func (a *API) currentIfSame(pr prepared) (*store.Policy, error) {
	office := pr.pub.Office
	cur, err := a.d.Store.Policy(office)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	curWide, err := decodeSigned(cur.Signed)
	if err != nil {
		return nil, fmt.Errorf("decode stored policy of %s: %w", office, err)
	}
	wide, variants := pr.compose(cur.Revision, curWide.GetIssuedUnix())
	if !policy.SameContent(wide, curWide) {
		return nil, nil
	}
	have, err := a.d.Store.VariantMembers(office)
	if err != nil {
		return nil, err
	}
	if len(have) != len(variants) {
		return nil, nil
	}
	for _, id := range have {
		want, ok := variants[id]
		if !ok {
			return nil, nil
		}
		v, err := a.d.Store.Variant(office, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if v.Revision != cur.Revision {
			return nil, nil
		}
		got, err := decodeSigned(v.Signed)
		if err != nil {
			return nil, fmt.Errorf("decode the policy of %s: %w", id, err)
		}
		if !policy.SameContent(want, got) {
			return nil, nil
		}
	}
	return cur, nil
}

func (a *API) logPublished(p *store.Policy, pr prepared) {
	if pr.variants > 0 {
		a.log.Info("policy published with variants", "office", p.Office, "revision", p.Revision, "variants", pr.variants)
	}
}

// prepareLocked works out the office's next revision from sc (everything
// read before the store's write transaction opens): what to store, and
// how to sign it at the revision the store gives.
func (a *API) prepareLocked(sc *scope, office, yaml string) (prepared, error) {
	if yaml == "" {
		var err error
		if yaml, err = a.officeYAML(office); err != nil {
			return prepared{}, err
		}
	}
	wide, err := sc.merge(office, nil)
	if err != nil {
		return prepared{}, err
	}
	defWindow, defReboot := policy.Defaults([]byte(yaml)) // once, for every variant
	members, err := sc.officeMembers(office)
	if err != nil {
		return prepared{}, err
	}
	own := map[string][]*wire.Item{}
	for i := range members {
		m := &members[i]
		if m.Role != "agent" {
			continue
		}
		eff, err := sc.merge(office, m)
		if err != nil {
			return prepared{}, err
		}
		if !policy.SameItems(eff.Items, wide.Items) {
			if own[m.ID], err = a.withPatches(office, defWindow, defReboot, eff.Items); err != nil {
				return prepared{}, err
			}
		}
	}
	wideItems, err := a.withPatches(office, defWindow, defReboot, wide.Items)
	if err != nil {
		return prepared{}, err
	}
	ids := make([]string, 0, len(own))
	for id := range own {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	extra := variantArtifacts(wideItems, own)
	tmpl := a.withAccess(&wire.Policy{Office: office})
	compose := func(rev uint64, issued int64) (*wire.Policy, map[string]*wire.Policy) {
		pw := proto.Clone(tmpl).(*wire.Policy)
		pw.Revision, pw.IssuedUnix, pw.Items, pw.VariantAgents, pw.VariantArtifacts = rev, issued, wideItems, ids, extra
		variants := map[string]*wire.Policy{}
		for _, id := range ids {
			pv := proto.Clone(tmpl).(*wire.Policy)
			pv.Revision, pv.IssuedUnix, pv.Items, pv.Agent = rev, issued, own[id], id
			variants[id] = pv
		}
		return pw, variants
	}
	build := func(rev uint64) ([]byte, map[string][]byte, error) {
		pw, pvs := compose(rev, time.Now().Unix())
		signed, err := a.d.Signer.Sign(pw)
		if err != nil {
			return nil, nil, err
		}
		if err := checkPolicySize(office, "", signed); err != nil {
			return nil, nil, err
		}
		variants := map[string][]byte{}
		for _, id := range ids {
			if variants[id], err = a.d.Signer.Sign(pvs[id]); err != nil {
				return nil, nil, err
			}
			if err := checkPolicySize(office, id, variants[id]); err != nil {
				return nil, nil, err
			}
		}
		return signed, variants, nil
	}
	return prepared{pub: store.Publication{Office: office, YAML: yaml, Build: build}, wide: wideItems, variants: len(ids), compose: compose}, nil
}

// maxSignedPolicy bounds a signed policy: it travels in one message, with
// room for what goes around it (a response, a gossip message).
const maxSignedPolicy = wire.MaxMessageSize - 64<<10

// checkPolicySize refuses a signed policy its agents could not receive
// (agent: a member's variant, "" the office's).
func checkPolicySize(office, agent string, signed []byte) error {
	if len(signed) <= maxSignedPolicy {
		return nil
	}
	of := "office " + office + "'s policy"
	if agent != "" {
		of = "the policy of " + agent + " in office " + office
	}
	return fmt.Errorf("%w: %s would take %d bytes signed, more than the %d a message may carry: remove items, or move large values into package artifacts",
		errPolicyTooLarge, of, len(signed), maxSignedPolicy)
}

// variantArtifacts is the content the variants name that the office-wide
// items do not, sorted by hash: relays pre-stage it too.
func variantArtifacts(wide []*wire.Item, own map[string][]*wire.Item) []*wire.Artifact {
	seen := map[string]bool{}
	for _, it := range wide {
		if h := it.GetArtifact().GetSha256(); h != "" {
			seen[h] = true
		}
	}
	var out []*wire.Artifact
	for _, items := range own {
		for _, it := range items {
			if a := it.GetArtifact(); a.GetSha256() != "" && !seen[a.GetSha256()] {
				seen[a.GetSha256()] = true
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSha256() < out[j].GetSha256() })
	return out
}

// publish signs the office's next revision from the stored policies.
func (a *API) publish(office string) (uint64, error) {
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil {
		return 0, err
	}
	p, _, err := a.publishLocked(sc, office, "")
	if err != nil {
		return 0, err
	}
	return p.Revision, nil
}

// affectedOffices are the offices with a computer that p targets (or
// targeted, for its old version), or that p targets as a whole.
func (a *API) affectedOffices(sc *scope, ps ...store.NamedPolicy) ([]string, error) {
	members, err := sc.allMembers()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, p := range ps {
		for _, o := range p.Targets.Offices {
			set[o] = true
		}
		for i := range members {
			m := &members[i]
			if m.Role == "agent" && level(p.Targets, "", m) != 0 {
				set[m.Office] = true
			}
		}
	}
	var out []string
	for o := range set {
		if _, err := a.d.Store.Office(o); err == nil {
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out, nil
}

// MemberPlaced is told when a member enrolled or changed office (placement
// by address, a move). An office that has never had a policy gets its
// first revision (firstRevision). Otherwise, if the member's effective
// policy there is not what the office's current revision gives it, the
// office gets a new revision, so that the member never runs an office-wide
// policy that is not its own.
func (a *API) MemberPlaced(id string) {
	if err := a.memberPlaced(id); err != nil {
		a.log.Error("publish the policy of a placed member", "member", id, "err", err)
	}
}

func (a *API) memberPlaced(id string) error {
	m, err := a.d.Store.Member(id)
	if err != nil || m.Role != "agent" {
		return err
	}
	// Cheap, and outside the lock: enrolments of a whole fleet pass here.
	has, err := a.d.Store.HasPolicy(m.Office)
	if err != nil {
		return err
	}
	if !has {
		return a.firstRevision(m.Office)
	}
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil || len(sc.named) == 0 {
		return err // without named policies every member takes the office's
	}
	cur, err := a.d.Store.Policy(m.Office)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	wide, err := sc.merge(m.Office, nil)
	if err != nil {
		return err
	}
	eff, err := sc.merge(m.Office, m)
	if err != nil {
		return err
	}
	need := !policy.SameItems(eff.Items, wide.Items)
	v, err := a.d.Store.Variant(m.Office, m.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	hasOwn := v != nil && cur != nil && v.Revision == cur.Revision
	if need == hasOwn {
		return nil
	}
	_, _, err = a.publishLocked(sc, m.Office, "")
	return err
}

// firstRevision gives an office that has never had a policy its first
// revision, even one that asks nothing, once an agent is in it: the agent
// then holds its office's policy and stops enforcing the one of the office
// it came from, and the catalog's report-only patches reach it. Not in a
// distribution office: its distribution server releases each revision
// after staging it, and until one has, an empty revision would only hold
// the office's agents back as not compliant.
func (a *API) firstRevision(office string) error {
	o, err := a.d.Store.Office(office)
	if err != nil || o.Mode == "distribution" {
		return err
	}
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	if has, err := a.d.Store.HasPolicy(office); err != nil || has {
		return err // another placement published it meanwhile
	}
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	_, _, err = a.publishLocked(sc, office, "")
	return err
}

// PublishFirstRevisions gives every office with agents and no policy its
// first revision (firstRevision): those from before the coordinator did so
// when an agent arrived. The coordinator calls it at start.
func (a *API) PublishFirstRevisions() error {
	offices, err := a.d.Store.Offices()
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range offices {
		has, err := a.d.Store.HasPolicy(o.Name)
		if err != nil || has {
			errs = append(errs, err)
			continue
		}
		members, err := a.d.Store.Members(o.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if slices.ContainsFunc(members, func(m store.Member) bool { return m.Role == "agent" }) {
			if err := a.firstRevision(o.Name); err != nil {
				errs = append(errs, fmt.Errorf("office %s: %w", o.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ---- named policies

type namedPolicyView struct {
	Name     string            `json:"name"`
	Priority int               `json:"priority"`
	Targets  store.Targets     `json:"targets"`
	Applied  time.Time         `json:"applied"`
	Created  time.Time         `json:"created"`
	YAML     string            `json:"yaml,omitempty"`
	Items    []json.RawMessage `json:"items,omitempty"`
	// Offices that got a new revision (apply and delete only).
	Published map[string]uint64 `json:"published,omitempty"`
	// Unchanged are the offices the policy reaches whose computers would
	// run the same as before: they keep their revision (office → it).
	Unchanged map[string]uint64 `json:"unchanged,omitempty"`
	// Computers it applies to now (show only).
	Computers *[]string `json:"computers,omitempty"`
	// Warnings are what the policy may not do as meant (apply only).
	Warnings []string `json:"warnings,omitempty"`
}

func namedView(p store.NamedPolicy) namedPolicyView {
	t := p.Targets
	for _, l := range []*[]string{&t.Offices, &t.Agents, &t.Labels} {
		if *l == nil {
			*l = []string{}
		}
	}
	return namedPolicyView{Name: p.Name, Priority: p.Priority, Targets: t, Applied: p.Applied, Created: p.Created}
}

func (a *API) putNamedPolicy(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if !policyName.MatchString(name) {
		return httpError(http.StatusBadRequest, "policy name %q: use 1-63 lower-case letters, digits and dashes, starting with a letter or digit", name)
	}
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return err
	}
	a.artifactsMu.RLock()
	defer a.artifactsMu.RUnlock()
	n, err := policy.CompileNamed(src, artifactLookup{a.d.Store})
	if err != nil {
		return err
	}
	for _, o := range n.Targets.Offices {
		if err := a.requireOffice(o, "targeted by policy "+name); err != nil {
			return err
		}
	}
	members, err := a.d.Store.Members("")
	if err != nil {
		return err
	}
	for _, t := range n.Targets.Agents {
		if memberIDForm.MatchString(t) && !slices.ContainsFunc(members, func(m store.Member) bool { return m.ID == t }) {
			return httpError(http.StatusNotFound, "agent %s (targeted by policy %s) is not enrolled: see outpost agent list, or target its hostname", t, name)
		}
	}
	p := store.NamedPolicy{Name: name, Priority: n.Priority, YAML: string(src), Applied: time.Now().UTC(),
		Targets: store.Targets{Offices: n.Targets.Offices, Agents: n.Targets.Agents, Labels: n.Targets.Labels}}

	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	var old []store.NamedPolicy
	for _, q := range sc.named {
		if q.Name == name {
			old = append(old, q.NamedPolicy)
		}
	}
	next := sc.with(compiledPolicy{NamedPolicy: p, items: n.Items})
	cs, err := next.conflicts(name)
	if err != nil {
		return err
	}
	if err := refuseConflicts("policy "+name, cs); err != nil {
		return err
	}
	created, published, unchanged, err := a.publishAffected(next, store.NamedChange{Put: &p}, force, append(old, p)...)
	if err != nil {
		return err
	}
	a.audit(r, "policy.apply", "policy "+name, fmt.Sprintf("priority %d, %s", p.Priority, plural(len(n.Items), "item")))
	a.log.Info("named policy applied", "policy", name, "priority", p.Priority, "items", len(n.Items), "offices", len(published))
	stored, err := a.d.Store.NamedPolicy(name)
	if err != nil {
		return err
	}
	v := namedView(*stored)
	v.YAML, v.Items, v.Published, v.Unchanged, v.Warnings = stored.YAML, itemsJSON(n.Items), published, unchanged, policy.Advice(n.Items)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, v)
	return nil
}

var memberIDForm = regexp.MustCompile(`^(ag|rl)-[0-9a-f]{16}$`)

// publishAffected makes change and publishes every office the policies
// (old and new versions) reach, in one transaction; it says whether the
// change created a policy, which revisions it issued, and which offices
// kept theirs because their computers would run the same (a policy applied
// again as it was re-runs no agent; force signs a new revision anyway).
func (a *API) publishAffected(sc *scope, change store.NamedChange, force bool, ps ...store.NamedPolicy) (bool, map[string]uint64, map[string]uint64, error) {
	offices, err := a.affectedOffices(sc, ps...)
	if err != nil {
		return false, nil, nil, err
	}
	var prs []prepared
	var pubs []store.Publication
	unchanged := map[string]uint64{}
	for _, o := range offices {
		pr, err := a.prepareLocked(sc, o, "")
		if err != nil {
			return false, nil, nil, fmt.Errorf("publish office %s: %w", o, err)
		}
		if !force {
			cur, err := a.currentIfSame(pr)
			if err != nil {
				return false, nil, nil, err
			}
			if cur != nil {
				unchanged[o] = cur.Revision
				continue
			}
		}
		prs, pubs = append(prs, pr), append(pubs, pr.pub)
	}
	created, stored, err := a.d.Store.PublishNamed(change, pubs, time.Now().UTC())
	if err != nil {
		return false, nil, nil, err
	}
	// Every office is stored before any is told: the first offices'
	// rollouts would otherwise compete with the work for the rest, and the
	// whole fleet starts together.
	out := map[string]uint64{}
	for _, p := range stored {
		out[p.Office] = p.Revision
	}
	if a.d.Notifier != nil {
		a.d.Notifier.NotifyRevisions(out)
	}
	for i, p := range stored {
		a.logPublished(p, prs[i])
	}
	if len(unchanged) == 0 {
		unchanged = nil
	}
	return created, out, unchanged, nil
}

func (a *API) listNamedPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.d.Store.NamedPolicies()
	if err != nil {
		return err
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	out := []namedPolicyView{}
	for _, p := range ps {
		out = append(out, namedView(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": out})
	return nil
}

func (a *API) showNamedPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := a.d.Store.NamedPolicy(r.PathValue("name"))
	if err != nil {
		return err
	}
	n, err := policy.CompileNamed([]byte(p.YAML), artifactLookup{a.d.Store})
	if err != nil {
		return fmt.Errorf("recompile policy %s: %w", p.Name, err)
	}
	members, err := a.d.Store.Members("")
	if err != nil {
		return err
	}
	computers := []string{}
	for i := range members {
		if m := &members[i]; m.Role == "agent" && level(p.Targets, m.Office, m) != 0 {
			computers = append(computers, m.Hostname)
		}
	}
	sort.Strings(computers)
	v := namedView(*p)
	v.YAML, v.Items, v.Computers = p.YAML, itemsJSON(n.Items), &computers
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) deleteNamedPolicy(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	p, err := a.d.Store.NamedPolicy(name)
	if err != nil {
		return err
	}
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	// Removing a policy cannot make others conflict: conflicts are between
	// policies of one level, and every level is checked, overridden or not.
	_, published, _, err := a.publishAffected(sc.without(name), store.NamedChange{Delete: name}, false, *p)
	if err != nil {
		return err
	}
	a.audit(r, "policy.delete", "policy "+name, "")
	a.log.Info("named policy deleted", "policy", name, "offices", len(published))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- effective policy and labels

type effectiveItem struct {
	ID string `json:"id"`
	policy.Origin
	Item json.RawMessage `json:"item"`
}

type effectiveView struct {
	Agent    string `json:"agent"`
	Hostname string `json:"hostname"`
	Office   string `json:"office"`
	Revision uint64 `json:"revision"`
	// Variant: the agent gets a signed policy of its own rather than its
	// office's.
	Variant   bool              `json:"variant"`
	Labels    map[string]string `json:"labels"`
	Items     []effectiveItem   `json:"items"`
	Conflicts []policy.Conflict `json:"conflicts"`
}

// patchSource is the origin of the patch items the coordinator adds.
const patchSource = "patches"

func (a *API) effectivePolicy(w http.ResponseWriter, r *http.Request) error {
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return err
	}
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	merged, err := sc.merge(m.Office, m)
	if err != nil {
		return err
	}
	src, err := a.officeYAML(m.Office)
	if err != nil {
		return err
	}
	defWindow, defReboot := policy.Defaults([]byte(src))
	items, err := a.withPatches(m.Office, defWindow, defReboot, merged.Items)
	if err != nil {
		return err
	}
	v := effectiveView{Agent: m.ID, Hostname: m.Hostname, Office: m.Office, Labels: m.Labels, Items: []effectiveItem{}, Conflicts: merged.Conflicts}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Conflicts == nil {
		v.Conflicts = []policy.Conflict{}
	}
	if p, err := a.d.Store.Policy(m.Office); err == nil {
		v.Revision = p.Revision
		if vr, err := a.d.Store.Variant(m.Office, m.ID); err == nil && vr.Revision == p.Revision {
			v.Variant = true
		}
	}
	raw := itemsJSON(items)
	for i, it := range items {
		o, ok := merged.Origins[it.GetId()]
		if !ok {
			o = policy.Origin{Policy: patchSource, Level: policy.LevelOffice}
		}
		e := effectiveItem{ID: it.GetId(), Origin: o}
		if i < len(raw) {
			e.Item = raw[i]
		}
		v.Items = append(v.Items, e)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// findMember finds the one member idOrHost names (store.MatchMembers).
func (a *API) findMember(idOrHost string) (*store.Member, error) {
	found, byHostname, err := a.d.Store.MatchMembers(idOrHost)
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, httpError(http.StatusNotFound, "no agent has the id or hostname %q: see outpost agent list", idOrHost)
	case 1:
		return &found[0], nil
	}
	what := "an id starting with"
	if byHostname {
		what = "the hostname"
	}
	ids := []string{}
	for _, x := range found {
		ids = append(ids, x.ID)
	}
	return nil, httpError(http.StatusConflict, "%d agents have %s %s (%s): name one by its whole id", len(found), what, idOrHost, strings.Join(ids, ", "))
}

type labelsInput struct {
	// Set adds or changes labels; a plain label has the value "".
	Set map[string]string `json:"set"`
	// Remove drops labels by key.
	Remove []string `json:"remove"`
}

const maxLabels = 64

func (a *API) setLabels(w http.ResponseWriter, r *http.Request) error {
	var in labelsInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	for k, v := range in.Set {
		if strings.Contains(k, "=") {
			return httpError(http.StatusBadRequest, "label key %q has a '=': set {\"key\": \"value\"}", k)
		}
		l := k
		if v != "" {
			l += "=" + v
		}
		if msg := policy.CheckLabel(l); msg != "" {
			return httpError(http.StatusBadRequest, "%s", msg)
		}
	}
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	m, err := a.findMember(r.PathValue("id"))
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for k, v := range m.Labels {
		labels[k] = v
	}
	for _, k := range in.Remove {
		delete(labels, k)
	}
	for k, v := range in.Set {
		labels[k] = v
	}
	if len(labels) > maxLabels {
		return httpError(http.StatusBadRequest, "an agent may have at most %d labels", maxLabels)
	}
	sc, err := a.loadScope()
	if err != nil {
		return err
	}
	before, err := sc.merge(m.Office, m)
	if err != nil {
		return err
	}
	next := *m
	next.Labels = labels
	after, err := sc.merge(m.Office, &next)
	if err != nil {
		return err
	}
	if len(after.Conflicts) > 0 {
		var cs []conflictView
		for _, c := range after.Conflicts {
			cs = append(cs, conflictView{Item: c.Item, Level: c.Level, Priority: c.Priority, Policies: c.Policies, Computers: []string{m.Hostname}})
		}
		return refuseConflicts("the labels of "+m.Hostname, cs)
	}
	updated, err := a.d.Store.UpdateMember(m.ID, func(x *store.Member) {
		x.Labels = labels
		if len(labels) == 0 {
			x.Labels = nil
		}
	})
	if err != nil {
		return err
	}
	a.audit(r, "agent.labels", "agent "+m.ID, labelsText(labels))
	if !policy.SameItems(before.Items, after.Items) {
		if _, _, err := a.publishLocked(sc, updated.Office, ""); err != nil {
			return err
		}
	}
	current, err := a.revisions()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.agentView(updated, current))
	return nil
}

func labelsText(labels map[string]string) string {
	var out []string
	for k, v := range labels {
		if v != "" {
			k += "=" + v
		}
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "cleared"
	}
	return strings.Join(out, " ")
}

// variantsOf lists the agents with a variant in a just-published policy.
func variantsOf(p *store.Policy) []string {
	pol, err := decodeSigned(p.Signed)
	if err != nil {
		return []string{}
	}
	return nonNilStrings(pol.GetVariantAgents())
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
