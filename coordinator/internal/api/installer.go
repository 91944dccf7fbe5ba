package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// installerView is what an installer carries: everything an agent needs to
// enrol into the office on first start. The CLI builds the installer from
// it next to the binaries; the coordinator stays out of the bytes.
type installerView struct {
	Office        string `json:"office"`
	Coordinator   string `json:"coordinator"`
	CAFingerprint string `json:"ca_fingerprint"`
	// The token, none for an upgrade installer.
	Token   string     `json:"token,omitempty"`
	TokenID string     `json:"token_id,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Uses    int        `json:"uses,omitempty"`
}

const (
	defaultInstallerUses = 100
	defaultInstallerTTL  = 7 * 24 * time.Hour
)

// installer answers POST /v1/offices/{name}/installer with a fresh
// multi-use, expiring agent token and the coordinator's public address and
// CA fingerprint.
func (a *API) installer(w http.ResponseWriter, r *http.Request) error {
	office := r.PathValue("name")
	in := struct {
		TTL  *Duration `json:"ttl"`
		Uses *int      `json:"uses"`
		// Upgrade asks for no token: the installer upgrades computers
		// enrolled already.
		Upgrade bool `json:"upgrade"`
	}{}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &in); err != nil {
			return err
		}
	}
	if in.Upgrade && (in.TTL != nil || in.Uses != nil) {
		return httpError(http.StatusBadRequest, "an upgrade installer has no token: ttl and uses do not apply")
	}
	ttl, uses := defaultInstallerTTL, defaultInstallerUses
	if in.TTL != nil {
		ttl = time.Duration(*in.TTL)
	}
	if in.Uses != nil {
		uses = *in.Uses
	}
	if ttl < time.Minute || ttl > 365*24*time.Hour {
		return httpError(http.StatusBadRequest, "ttl %v: want between 1m and 8760h", ttl)
	}
	if uses < 1 || uses > 100000 {
		return httpError(http.StatusBadRequest, "uses %d: want between 1 and 100000", uses)
	}
	if err := a.requireOffice(office, "of the installer"); err != nil {
		return err
	}
	if a.d.PublicAddress == "" || a.d.CAFingerprint == "" {
		return httpError(http.StatusServiceUnavailable, "the coordinator does not know its public address or CA fingerprint: set public_address in its configuration")
	}
	if in.Upgrade {
		writeJSON(w, http.StatusOK, installerView{Office: office, Coordinator: a.d.PublicAddress, CAFingerprint: a.d.CAFingerprint})
		return nil
	}
	secret, t, err := newEnrollToken(office, "agent", ttl, uses)
	if err != nil {
		return err
	}
	if err := a.d.Store.CreateToken(t); err != nil {
		return err
	}
	a.log.Info("installer token created", "token_id", t.ID, "office", office, "uses", uses, "expires", t.Expires)
	writeJSON(w, http.StatusCreated, installerView{Office: office, Coordinator: a.d.PublicAddress, CAFingerprint: a.d.CAFingerprint,
		Token: secret, TokenID: t.ID, Expires: &t.Expires, Uses: t.Uses})
	return nil
}

// newEnrollToken makes an enrollment token's secret and its stored record
// (which keeps only the hash), as POST /v1/offices/{name}/tokens does.
func newEnrollToken(office, role string, ttl time.Duration, uses int) (string, store.Token, error) {
	var raw [20]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", store.Token{}, err
	}
	secret := "opt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:]))
	sum := sha256.Sum256([]byte(secret))
	now := time.Now().UTC()
	return secret, store.Token{ID: hex.EncodeToString(sum[:4]), Hash: hex.EncodeToString(sum[:]), Office: office, Role: role,
		Expires: now.Add(ttl).Truncate(time.Second), Uses: uses, Created: now}, nil
}
