package relay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// policyFile keeps the last signed policy the relay accepted, so that its
// pins hold from the start after a restart, before the coordinator answers.
const policyFile = "policy.signed"

// officePolicy is what the relay takes from its office's signed policy: the
// artifacts it names, which the cache pins and pre-stages.
type officePolicy struct {
	key    ed25519.PublicKey
	office string
	dir    string
	apply  func(revision uint64, hashes []string, sizes map[string]int64)

	revision uint64
}

// accept verifies sp with the pinned key and applies it if it is for this
// office and newer than the last one; an older or equal revision is
// ignored, a forged one refused.
func (p *officePolicy) accept(sp *wire.SignedPolicy, persist bool) error {
	pol, err := wire.VerifyPolicy(p.key, sp)
	if err != nil {
		return err
	}
	if pol.GetOffice() != p.office {
		return fmt.Errorf("policy for office %q, this relay is in %q", pol.GetOffice(), p.office)
	}
	if pol.GetAgent() != "" {
		return fmt.Errorf("policy is for agent %q alone, not for a relay", pol.GetAgent())
	}
	if pol.GetRevision() <= p.revision {
		return nil
	}
	if persist {
		b, err := proto.Marshal(sp)
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(p.dir, policyFile), b, 0o600); err != nil {
			return fmt.Errorf("save policy: %w", err)
		}
	}
	p.revision = pol.GetRevision()
	p.apply(pol.GetRevision(), Artifacts(pol), ArtifactSizes(pol))
	return nil
}

// load applies the saved policy, if any.
func (p *officePolicy) load() error {
	b, err := os.ReadFile(filepath.Join(p.dir, policyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var sp wire.SignedPolicy
	if err := wire.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("saved policy %s: %w", policyFile, err)
	}
	return p.accept(&sp, false)
}

// fetch asks the coordinator for a policy newer than the one held.
func (p *officePolicy) fetch(ctx context.Context, call func(context.Context, *wire.Request) (*wire.Response, error)) error {
	resp, err := call(ctx, &wire.Request{Body: &wire.Request_Policy{Policy: &wire.PolicyRequest{HaveRevision: p.revision}}})
	if err != nil {
		return fmt.Errorf("fetch policy: %w", err)
	}
	sp := resp.GetPolicy().GetPolicy()
	if sp == nil {
		return nil
	}
	if err := p.accept(sp, true); err != nil {
		return fmt.Errorf("refused policy from the coordinator: %w", err)
	}
	return nil
}

// Artifacts lists the distinct SHA-256 names of the artifacts a policy
// names, sorted: its items' and those of the office's agents that have a
// policy of their own (variant_artifacts).
func Artifacts(p *wire.Policy) []string {
	seen := map[string]bool{}
	var out []string
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, it := range p.GetItems() {
		add(it.GetArtifact().GetSha256())
	}
	for _, a := range p.GetVariantArtifacts() {
		add(a.GetSha256())
	}
	sort.Strings(out)
	return out
}

// ArtifactSizes maps each artifact a policy names to its size.
func ArtifactSizes(p *wire.Policy) map[string]int64 {
	out := map[string]int64{}
	for _, it := range p.GetItems() {
		if a := it.GetArtifact(); a.GetSha256() != "" {
			out[a.GetSha256()] = a.GetSize()
		}
	}
	for _, a := range p.GetVariantArtifacts() {
		if a.GetSha256() != "" {
			out[a.GetSha256()] = a.GetSize()
		}
	}
	return out
}
