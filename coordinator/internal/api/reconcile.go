package api

import (
	"errors"
	"fmt"
)

// Reconcile signs a new revision for every office whose current one is
// not what its stored policies, approvals, labels, placements and
// permission lists make now. Changes are stored first and signed after;
// a coordinator killed (or failing) in between leaves the change stored
// and unsigned, and its retry often sees nothing left to do (a revoked
// approval is gone, labels already set). This puts such changes out: at
// start, and every hour with the patch rules. An office whose revision
// is current is left alone, so it costs no agent anything.
func (a *API) Reconcile() (published []string, err error) {
	offices, err := a.d.Store.Offices()
	if err != nil {
		return nil, err
	}
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, o := range offices {
		has, err := a.d.Store.HasPolicy(o.Name)
		if err != nil || !has {
			errs = append(errs, err) // the first revision is PublishFirstRevisions'
			continue
		}
		pr, err := a.prepareLocked(sc, o.Name, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("office %s: %w", o.Name, err))
			continue
		}
		cur, err := a.currentIfSame(pr)
		if err != nil || cur != nil {
			errs = append(errs, err)
			continue
		}
		p, err := a.publishPrepared(pr)
		if err != nil {
			errs = append(errs, fmt.Errorf("office %s: %w", o.Name, err))
			continue
		}
		a.log.Warn("signed a change that was stored but never signed (the coordinator stopped or failed in between)",
			"office", o.Name, "revision", p.Revision)
		published = append(published, o.Name)
	}
	return published, errors.Join(errs...)
}
