package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/vault"
)

// oauthLogin serves POST /v1/oauth/{venue}/login: the server runs the
// authorization-code flow with PKCE on a loopback redirect (RFC 8252), so
// the client secret never leaves the vault, and stores the refresh token it
// obtains as a new version of the venue's credential. The answer is NDJSON:
// first {"auth_url": ...} for the operator to open, then the result.
func oauthLogin(cfg func() *config.Config, v *vault.Vault, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("venue")
		vc, ok := cfg().Venues[id]
		if !ok || vc.Auth == nil || vc.Auth.Scheme != config.SchemeOAuth2 || vc.Auth.OAuth2.AuthURL == "" {
			admin.WriteError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("venue %q has no auth.oauth2.auth_url configured", id))
			return
		}
		var req admin.OAuthLoginRequest
		if !admin.DecodeJSON(w, r, &req) {
			return
		}
		tr, err := transportFor(id, vc, log, nil)
		if err != nil {
			admin.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		var clientID string
		var clientSecret secret.Value
		err = v.WithCredential(r.Context(), vc.Credential, func(c *vault.Credential) error {
			idv, err := c.Field("client_id")
			if err != nil {
				return err
			}
			clientID = string(idv.Reveal())
			if s, err := c.Field("client_secret"); err == nil {
				clientSecret = s.Clone()
			}
			return nil
		})
		if err != nil {
			admin.WriteError(w, http.StatusBadRequest, "invalid", "credential "+vc.Credential+": "+err.Error())
			return
		}
		defer clientSecret.Wipe()
		timeout := req.Timeout
		// The admin server's write timeout is 5 minutes: stay below it.
		if timeout <= 0 || timeout > 4*time.Minute {
			timeout = 4 * time.Minute
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flush := func() {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		style := session.AuthBasic
		if vc.Auth.OAuth2.ClientAuth == "body" {
			style = session.AuthPost
		}
		toks, err := session.AuthorizationCodeFlow(ctx, session.AuthCodeOptions{
			AuthURL: vc.Auth.OAuth2.AuthURL, TokenURL: vc.Auth.OAuth2.TokenURL, ClientID: clientID,
			ClientSecret: clientSecret, AuthStyle: style, Scopes: vc.Auth.OAuth2.Scopes, RedirectPort: req.Port,
			HTTPClient: tr.Client(), Logger: log,
			OpenBrowser: func(u string) error {
				err := enc.Encode(admin.OAuthLoginEvent{AuthURL: u})
				flush()
				return err
			},
		})
		if err != nil {
			_ = enc.Encode(admin.OAuthLoginEvent{Error: err.Error()})
			return
		}
		defer toks.AccessToken.Wipe()
		if toks.RefreshToken.IsZero() {
			_ = enc.Encode(admin.OAuthLoginEvent{Error: "the authorization server issued no refresh token (request offline access?)"})
			return
		}
		if err := saveRefreshToken(v, vc.Credential)(r.Context(), toks.RefreshToken); err != nil {
			_ = enc.Encode(admin.OAuthLoginEvent{Error: "store refresh token: " + err.Error()})
			return
		}
		info, err := v.Show(r.Context(), vc.Credential)
		if err != nil {
			_ = enc.Encode(admin.OAuthLoginEvent{Error: err.Error()})
			return
		}
		_ = enc.Encode(admin.OAuthLoginEvent{Done: true, Credential: info.Name, Version: info.CurrentVersion})
	}
}
