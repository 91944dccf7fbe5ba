package api

import (
	"net/http"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// CA is what the API shows of the coordinator's CA.
type CA interface {
	// Chain is the CA's certificates, the current one first.
	Chain() [][]byte
	// RenewsFrom is when the current one comes due for renewal.
	RenewsFrom() time.Time
}

type caCertView struct {
	Fingerprint string    `json:"fingerprint"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Ended       bool      `json:"ended,omitempty"`
}

type caView struct {
	caCertView
	RenewsFrom time.Time    `json:"renews_from"`
	Earlier    []caCertView `json:"earlier,omitempty"`
	// Members counts enrolled members by the newest certificate of the CA
	// they hold, as their last check-in said: the current one, an earlier
	// one (they learn the current one at their next direct check-in), or
	// unknown (a version that does not say).
	Members struct {
		Current int `json:"current"`
		Earlier int `json:"earlier"`
		Unknown int `json:"unknown"`
	} `json:"members"`
}

// showCA says which certificates the coordinator's CA has (it renews its
// certificate with the same key; earlier fingerprints still work) and how
// far its members have learned the current one.
func (a *API) showCA(w http.ResponseWriter, r *http.Request) error {
	if a.d.CA == nil {
		return httpError(http.StatusNotImplemented, "this coordinator does not show its CA")
	}
	certs, err := tlsutil.ParseCerts(a.d.CA.Chain())
	if err != nil {
		return err
	}
	now := time.Now()
	var v caView
	for i, c := range certs {
		cv := caCertView{Fingerprint: tlsutil.Fingerprint(c.Raw), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Ended: now.After(c.NotAfter)}
		if i == 0 {
			v.caCertView = cv
			continue
		}
		v.Earlier = append(v.Earlier, cv)
	}
	v.RenewsFrom = a.d.CA.RenewsFrom().UTC()
	members, err := a.d.Store.Members("")
	if err != nil {
		return err
	}
	for _, m := range members {
		switch m.CAFingerprint {
		case v.Fingerprint:
			v.Members.Current++
		case "":
			v.Members.Unknown++
		default:
			v.Members.Earlier++
		}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
