package admin

import (
	"time"
)

// API paths.
const (
	PathStatus  = "/v1/status"
	PathSecrets = "/v1/secrets"
	PathRekey   = "/v1/vault/rekey"
	PathTokens  = "/v1/tokens"
)

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names an error: a stable code and a human message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SetSecretRequest is the body of PUT /v1/secrets/{name}. Values are raw
// bytes (base64 in JSON). It is only ever sent over the admin socket.
type SetSecretRequest struct {
	Fields       map[string][]byte `json:"fields"`
	RotationDays int               `json:"rotation_days,omitempty"`
	MustExist    bool              `json:"must_exist,omitempty"`
}

// RevokeSecretRequest is the body of POST /v1/secrets/{name}/revoke.
type RevokeSecretRequest struct {
	Compromised bool `json:"compromised"`
}

// OAuthLoginRequest is the body of POST /v1/oauth/{venue}/login.
type OAuthLoginRequest struct {
	Port    int           `json:"port,omitempty"`       // loopback redirect port; 0 = ephemeral
	Timeout time.Duration `json:"timeout_ns,omitempty"` // how long to wait for the browser
}

// OAuthLoginEvent is one NDJSON line of the oauth login answer.
type OAuthLoginEvent struct {
	AuthURL    string `json:"auth_url,omitempty"`
	Done       bool   `json:"done,omitempty"`
	Credential string `json:"credential,omitempty"`
	Version    int    `json:"version,omitempty"`
	Error      string `json:"error,omitempty"`
}

// PathOAuth is the prefix of the OAuth endpoints.
const PathOAuth = "/v1/oauth"
