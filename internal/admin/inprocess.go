package admin

import (
	"context"
	"net/http"

	"github.com/keystile/keystile/internal/mfa"
)

// WithPrincipal names the caller of an in-process admin request (see
// Server.InProcess): the principal the second factor binds sessions to and
// the audit trail names, e.g. "console:laptop" for the web console's
// session of admin token laptop.
func WithPrincipal(ctx context.Context, p mfa.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// InProcess is the admin API for clients in the same process (the web
// console): the very route table, MFA gate (MFARoutes, RequireMFA) and
// audit trail the unix socket and the TCP listener serve, without a
// listener. The caller has authenticated its user and names it with
// WithPrincipal; a request without a principal is refused (403), so that
// no request is taken for the server's own uid by mistake.
func (s *Server) InProcess() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(principalKey{}).(mfa.Principal)
		if !ok || p == "" {
			WriteError(w, http.StatusForbidden, "forbidden", "an in-process admin request must name its principal")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		s.inner.ServeHTTP(w, r)
	})
}

// MatchBearer reports the name of the configured admin token tok is, if
// any: its form is checked (ParseAdminToken), then its SHA-256 is compared
// with every digest in constant time. The web console logs in with it.
func MatchBearer(tokens []BearerToken, tok string) (string, bool) {
	d, err := ParseAdminToken(tok)
	if err != nil {
		return "", false
	}
	return matchBearer(tokens, d)
}
