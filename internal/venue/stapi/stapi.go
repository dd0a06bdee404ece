// Package stapi is the STAPI venue: an API authenticated with an API key in
// the X-STAPI-API-Key header, or with OAuth 2.0 bearer tokens (client
// credentials or a stored refresh token) that keystile obtains, refreshes
// and injects. It is the generic venue with STAPI's operations table.
package stapi

import (
	"errors"

	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/generic"
)

// HeaderAPIKey is STAPI's API key header.
const HeaderAPIKey = "X-STAPI-API-Key" // #nosec G101 -- a header name, not a credential

// Operations is STAPI's operations table.
var Operations = venue.Table{
	{Method: "GET", Path: "/v1/account", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v1/videos", Op: venue.OpMediaRead},
	{Method: "GET", Path: "/v1/videos/{id}", Op: venue.OpMediaRead},
	{Method: "POST", Path: "/v1/videos", Op: venue.OpMediaWrite},
	{Method: "DELETE", Path: "/v1/videos/{id}", Op: venue.OpMediaWrite},
	{Method: "POST", Path: "/v1/api-keys", Op: venue.OpAPIKeyManage},
	{Method: "DELETE", Path: "/v1/api-keys/{id}", Op: venue.OpAPIKeyManage},
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	// OAuth, if set, authenticates with bearer tokens instead of the key.
	OAuth *session.OAuth
}

// New returns a STAPI venue.
func New(o Options) (*generic.Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("stapi: no credentials")
	}
	g := generic.Options{Credentials: o.Credentials, Operations: Operations, Scheme: generic.SchemeHeader,
		Header: HeaderAPIKey, KeyField: "api_key"}
	if o.OAuth != nil {
		g.Scheme, g.OAuth, g.Extra = generic.SchemeOAuth2, o.OAuth, []string{HeaderAPIKey}
	}
	return generic.New(g)
}
