package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// VerifySTAPIClient checks RFC 6749 §2.3.1 HTTP Basic client authentication
// (client id and secret are form-urlencoded before Basic encoding, which
// net/http's BasicAuth does not undo, so it is undone here). It reports
// whether the credentials match, in constant time.
func VerifySTAPIClient(r *http.Request, clientID, clientSecret secret.Value) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	u, p = formUnescape(u), formUnescape(p)
	idOK := clientID.EqualBytes([]byte(u))
	secOK := clientSecret.EqualBytes([]byte(p))
	return idOK && secOK
}

func formUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	v, err := urlQueryUnescape(s)
	if err != nil {
		return s
	}
	return v
}

type stapiToken struct {
	expires time.Time
	refresh bool
}

type stapi struct {
	vs           *venueServer
	apiKey       secret.Value
	clientID     secret.Value
	clientSecret secret.Value
	ttl          time.Duration

	mu     sync.Mutex
	tokens map[string]stapiToken // access and refresh tokens
}

func newSTAPI(vs *venueServer, creds map[string]string, ttl time.Duration) (*stapi, error) {
	if ttl <= 0 {
		ttl = time.Hour
	}
	s := &stapi{vs: vs, ttl: ttl, tokens: map[string]stapiToken{},
		apiKey:       secret.FromString(creds["api_key"]),
		clientID:     secret.FromString(creds["client_id"]),
		clientSecret: secret.FromString(creds["client_secret"]),
	}
	if s.apiKey.IsZero() {
		s.apiKey = secret.FromString("stk_" + randHex(20))
	}
	if s.clientID.IsZero() {
		s.clientID = secret.FromString("stc_" + randHex(8))
	}
	if s.clientSecret.IsZero() {
		s.clientSecret = secret.FromString(randHex(24))
	}
	if strings.Contains(string(s.clientID.Reveal()), ":") {
		return nil, fmt.Errorf("%w: stapi client_id must not contain ':'", ErrBadCredentials)
	}
	return s, nil
}

func (s *stapi) credentials() map[string]string {
	return map[string]string{
		"api_key": string(s.apiKey.Reveal()), "client_id": string(s.clientID.Reveal()),
		"client_secret": string(s.clientSecret.Reveal()),
	}
}
func (s *stapi) credentialHeaders() []string { return []string{"X-STAPI-API-Key", "Authorization"} }
func (s *stapi) expireSessions() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}

// oauthError writes an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, code int, e, desc string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="stapi"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]string{"error": e, "error_description": desc})
}

func (s *stapi) token(w http.ResponseWriter, r *http.Request, body []byte) {
	s.vs.login()
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	form, err := parseForm(r, body)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "body must be application/x-www-form-urlencoded")
		return
	}
	if !VerifySTAPIClient(r, s.clientID, s.clientSecret) {
		s.vs.authFailure()
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	now := s.vs.clock()
	switch form.Get("grant_type") {
	case "client_credentials":
	case "refresh_token":
		rt := form.Get("refresh_token")
		s.mu.Lock()
		t, ok := s.tokens[rt]
		if ok && t.refresh {
			delete(s.tokens, rt) // refresh tokens rotate
		}
		s.mu.Unlock()
		if !ok || !t.refresh || !now.Before(t.expires) {
			s.vs.authFailure()
			oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token is invalid or expired")
			return
		}
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type is not supported")
		return
	}
	access, refresh := "sta_"+randHex(24), "str_"+randHex(24)
	s.mu.Lock()
	s.tokens[access] = stapiToken{expires: now.Add(s.ttl)}
	s.tokens[refresh] = stapiToken{expires: now.Add(30 * 24 * time.Hour), refresh: true}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(s.ttl / time.Second),
		"refresh_token": refresh, "scope": "videos account",
	})
}

// authorized checks X-STAPI-API-Key or a Bearer access token; on failure it
// returns the RFC 6750 error code for WWW-Authenticate.
func (s *stapi) authorized(r *http.Request) (bool, string) {
	if k := r.Header.Get("X-STAPI-API-Key"); k != "" {
		return s.apiKey.EqualBytes([]byte(k)), "invalid_token"
	}
	a := r.Header.Get("Authorization")
	tok, ok := cutPrefixFold(a, "Bearer ")
	if !ok || tok == "" {
		return false, ""
	}
	s.mu.Lock()
	t, found := s.tokens[tok]
	s.mu.Unlock()
	// Map lookup by token is not constant-time; the tokens are random and
	// single-use values of a test emulator, so a timing oracle buys nothing.
	if !found || t.refresh || !s.vs.clock().Before(t.expires) {
		return false, "invalid_token"
	}
	return true, ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(s[len(prefix):]), true
}

func (s *stapi) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.URL.Path == "/oauth/token" {
		s.vs.count("oauth.token")
		s.token(w, r, body)
		return
	}
	var op, id string
	switch p := r.URL.Path; {
	case r.Method == http.MethodGet && p == "/v1/account":
		op = "account.read"
	case r.Method == http.MethodGet && p == "/v1/videos":
		op = "videos.list"
	case r.Method == http.MethodPost && p == "/v1/videos":
		op = "videos.create"
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/v1/videos/") && len(p) > len("/v1/videos/"):
		op, id = "videos.delete", strings.TrimPrefix(p, "/v1/videos/")
	default:
		s.vs.count("not_found")
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	s.vs.count(op)
	if ok, e := s.authorized(r); !ok {
		s.vs.authFailure()
		h := `Bearer realm="stapi"`
		if e != "" {
			h += fmt.Sprintf(", error=%q", e)
		}
		w.Header().Set("WWW-Authenticate", h)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
		return
	}
	switch op {
	case "account.read":
		writeJSON(w, http.StatusOK, map[string]any{"id": "acct_sandbox", "name": "Sandbox Studio", "plan": "pro", "videos_count": len(s.vs.openOrders())})
	case "videos.list":
		out := []any{}
		for _, o := range s.vs.openOrders() {
			out = append(out, stapiVideo(o))
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": out, "total": len(out)})
	case "videos.create":
		var req struct {
			Title     string `json:"title"`
			ClientRef string `json:"client_ref"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Title == "" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "invalid_request", "error_description": "title is required"})
			return
		}
		ref := req.ClientRef
		if ref == "" {
			ref = r.Header.Get("Idempotency-Key")
		}
		o := s.vs.addOrder("vid_", Order{ClientOrderID: ref, Instrument: req.Title})
		writeJSON(w, http.StatusCreated, stapiVideo(o))
	case "videos.delete":
		if _, ok := s.vs.cancelOrder(id); !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func stapiVideo(o Order) map[string]any {
	return map[string]any{"id": o.ID, "title": o.Instrument, "client_ref": o.ClientOrderID, "status": "processing", "created_at": o.Placed}
}

var _ emulator = (*stapi)(nil)
