package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/localca"
)

// PathCA is the local CA's endpoint: GET describes it (with its PEM),
// POST creates it, POST PathCA+"/rotate" replaces it.
const PathCA = "/v1/ca"

// CARequest is the body of POST /v1/ca and /v1/ca/rotate.
type CARequest struct {
	// Constrain adds name constraints: the new CA can certify only the
	// hosts of the configured venues and the gateway's TLS names.
	Constrain bool `json:"constrain,omitempty"`
	// Validity is the CA's lifetime; 0 means localca.DefaultValidity.
	Validity time.Duration `json:"validity_ns,omitempty"`
}

// CA describes the running server's local CA.
func (c *Client) CA(ctx context.Context) (localca.Info, error) {
	var i localca.Info
	return i, c.Do(ctx, http.MethodGet, PathCA, nil, &i)
}

// InitCA creates the local CA (refused if one exists).
func (c *Client) InitCA(ctx context.Context, req CARequest) (localca.Info, error) {
	var i localca.Info
	return i, c.Do(ctx, http.MethodPost, PathCA, req, &i)
}

// RotateCA replaces the local CA with a new key and certificate.
func (c *Client) RotateCA(ctx context.Context, req CARequest) (localca.Info, error) {
	var i localca.Info
	return i, c.Do(ctx, http.MethodPost, PathCA+"/rotate", req, &i)
}
