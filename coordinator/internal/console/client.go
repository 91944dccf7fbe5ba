package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// apiError is a failed API call: the status and the API's own message,
// which the console shows as it is.
type apiError struct {
	Status int
	Msg    string
	// Conflicts are the policy conflicts of a 409 that refused a change.
	Conflicts []conflict
}

func (e *apiError) Error() string { return e.Msg }

// errSignedOut ends a session whose credentials the API no longer takes:
// the refresh token was refused, the user was disabled, the token revoked.
var errSignedOut = errors.New("your session has ended: sign in again")

// stream is a request body the console passes through without holding it.
type stream struct {
	r    io.Reader
	size int64 // -1 when unknown
	// conn sets the read deadline of the browser's connection the bytes
	// come on: the API keeps its upload's idle limit there.
	conn *http.ResponseController
}

// connRecorder records the API's answer to a streamed request, and lets
// its http.ResponseController reach the browser's connection for read
// deadlines.
type connRecorder struct {
	*httptest.ResponseRecorder
	conn *http.ResponseController
}

func (c connRecorder) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// call sends one request to the API handler in-process and decodes its
// JSON answer into out. The API does every check — role, validation,
// transactions — exactly as for the CLI. remote is the browser's address,
// so that the API's sign-in rate limits see the real client.
func (c *Console) call(ctx context.Context, remote, token, method, path string, body any, out any) error {
	var rd io.Reader = http.NoBody
	ctype := "application/json"
	size := int64(-1)
	switch b := body.(type) {
	case nil:
		size = 0
	case string: // policy YAML, patch feeds
		rd, ctype, size = strings.NewReader(b), "application/yaml", int64(len(b))
	case stream:
		rd, ctype, size = b.r, "application/octet-stream", b.size
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd, size = bytes.NewReader(j), int64(len(j))
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", method, path, err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	var w http.ResponseWriter = rec
	if s, ok := body.(stream); ok && s.conn != nil {
		w = connRecorder{rec, s.conn}
	}
	c.api.ServeHTTP(w, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		var e struct {
			Error     string     `json:"error"`
			Conflicts []conflict `json:"conflicts"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, res.Status)
		}
		return &apiError{Status: res.StatusCode, Msg: e.Error, Conflicts: e.Conflicts}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// tokens is the API's sign-in answer.
type tokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expires      time.Time `json:"expires"`
	User         string    `json:"user"`
	Role         string    `json:"role"`
}

// refreshAhead refreshes an access token this long before it expires, so
// that a call never carries one that runs out on the way.
const refreshAhead = 30 * time.Second

// token returns the session's bearer token, refreshed with the refresh
// token when it is about to expire. One refresh runs at a time per
// session: a refresh token is spent on use, and presenting it twice would
// make the API revoke the whole sign-in.
func (c *Console) token(r *http.Request, s *session) (string, error) {
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	s.mu.Lock()
	access, refresh, expires, user, ended := s.access, s.refresh, s.expires, s.user, s.ended
	s.mu.Unlock()
	if ended {
		return "", errSignedOut
	}
	if refresh == "" || expires.IsZero() || c.now().Add(refreshAhead).Before(expires) {
		return access, nil
	}
	var t tokens
	err := c.call(r.Context(), r.RemoteAddr, "", "POST", "/v1/login/refresh", map[string]string{"refresh_token": refresh}, &t)
	if err != nil {
		c.log.Info("session refresh refused; signing out", "user", user, "err", err)
		return "", errSignedOut
	}
	s.mu.Lock()
	s.access, s.refresh, s.expires, s.role = t.AccessToken, t.RefreshToken, t.Expires, t.Role
	s.mu.Unlock()
	return t.AccessToken, nil
}

// do calls the API as the session's user.
func (c *Console) do(r *http.Request, s *session, method, path string, body, out any) error {
	tok, err := c.token(r, s)
	if err != nil {
		return err
	}
	err = c.call(r.Context(), r.RemoteAddr, tok, method, path, body, out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		c.log.Info("API refused the session's token; signing out", "user", s.user, "err", ae.Msg)
		return errSignedOut
	}
	return err
}
