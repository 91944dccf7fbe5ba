package coordinator

import (
	"path/filepath"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// startAuth loads the token-signing key (created at first start, next to
// the CA) and the authorization server, and creates the first admin.
func (c *Coordinator) startAuth(st *store.Store, issuer string) (*auth.Server, error) {
	key, err := auth.LoadOrCreateKey(filepath.Join(c.cfg.DataDir, "token.key"))
	if err != nil {
		return nil, err
	}
	cfg := auth.DefaultConfig()
	cfg.Issuer = issuer
	cfg.KDF = c.cfg.PasswordKDF.WithDefaults()
	if c.cfg.AccessTokenTTL > 0 {
		cfg.AccessTTL = c.cfg.AccessTokenTTL
	}
	s, err := auth.New(cfg, st, key, c.log, c.reg)
	if err != nil {
		return nil, err
	}
	if err := s.Bootstrap(); err != nil {
		return nil, err
	}
	return s, nil
}
