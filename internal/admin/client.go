package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// Client talks to a running server over its unix socket (NewClient) or
// its TCP listener (NewRemoteClient).
type Client struct {
	socket string // the socket path, or the remote base URL
	base   string // "http://keystile" on the socket
	bearer secret.Value
	hc     *http.Client
	mfa    ClientMFA
}

// Errors the CLI branches on.
var (
	ErrNotRunning   = errors.New("admin: keystile server is not running (start it with `keystile serve`)")
	ErrSocketOwner  = errors.New("admin: admin socket is owned by another user; refusing to talk to it")
	ErrSocketNotOur = errors.New("admin: admin socket path is not a socket")
)

// APIError is an error answer from the server.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// NewClient checks the socket (exists, is a socket, owned by this uid or
// root) and returns a client for it.
func NewClient(socket string) (*Client, error) {
	st, err := os.Lstat(socket)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no socket at %s", ErrNotRunning, socket)
	}
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return nil, fmt.Errorf("%w: %s", ErrSocketNotOur, socket)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != os.Getuid() && uid != 0 {
			return nil, fmt.Errorf("%w: %s belongs to uid %d, you are uid %d", ErrSocketOwner, socket, uid, os.Getuid())
		}
	}
	return &Client{socket: socket, base: "http://keystile", hc: &http.Client{
		Timeout: 5 * time.Minute,
		// The admin API never redirects; following one (ServeMux
		// cleans paths with 307s that keep the method) could turn a
		// request into another endpoint's.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			Proxy:             nil,
			DisableKeepAlives: true,
		},
	}}, nil
}

// Do sends a request and decodes a JSON answer into out (if non-nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin: encode request: %w", err)
		}
		defer clear(b)
		body = b
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin: read answer: %w", err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin: decode answer: %w", err)
		}
	}
	return nil
}

// Status fetches the server status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.Do(ctx, http.MethodGet, PathStatus, nil, &s)
}

// SetSecret stores fields as a new version. The request's byte slices are
// wiped after sending.
func (c *Client) SetSecret(ctx context.Context, name string, req SetSecretRequest) (vault.Info, error) {
	defer func() {
		for _, v := range req.Fields {
			clear(v)
		}
	}()
	var i vault.Info
	return i, c.Do(ctx, http.MethodPut, PathSecrets+"/"+url.PathEscape(name), req, &i)
}

// ListSecrets lists credential metadata.
func (c *Client) ListSecrets(ctx context.Context) ([]vault.Info, error) {
	var l []vault.Info
	return l, c.Do(ctx, http.MethodGet, PathSecrets, nil, &l)
}

// ShowSecret shows one credential's metadata.
func (c *Client) ShowSecret(ctx context.Context, name string) (vault.Info, error) {
	var i vault.Info
	return i, c.Do(ctx, http.MethodGet, PathSecrets+"/"+url.PathEscape(name), nil, &i)
}

// RevokeSecret revokes a credential.
func (c *Client) RevokeSecret(ctx context.Context, name string, compromised bool) (vault.Info, error) {
	var i vault.Info
	return i, c.Do(ctx, http.MethodPost, PathSecrets+"/"+url.PathEscape(name)+"/revoke", RevokeSecretRequest{Compromised: compromised}, &i)
}

// DeleteSecret removes a credential no configured venue signs with (see
// RemoveSecret).
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.RemoveSecret(ctx, name, false)
}

// RemoveSecret removes a credential. Without force the server refuses
// (409, code in_use) to remove one a configured venue signs with.
func (c *Client) RemoveSecret(ctx context.Context, name string, force bool) error {
	path := PathSecrets + "/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	return c.Do(ctx, http.MethodDelete, path, nil, nil)
}

// Rekey rotates the vault's key-encryption key.
func (c *Client) Rekey(ctx context.Context) (vault.RekeyResult, error) {
	var r vault.RekeyResult
	return r, c.Do(ctx, http.MethodPost, PathRekey, nil, &r)
}

// OAuthLogin runs the authorization-code flow on the server: onURL gets the
// URL to open in a browser; the call returns when the flow completes.
func (c *Client) OAuthLogin(ctx context.Context, venue string, req OAuthLoginRequest, onURL func(string)) (OAuthLoginEvent, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return OAuthLoginEvent{}, err
	}
	resp, err := c.send(ctx, http.MethodPost, PathOAuth+"/"+url.PathEscape(venue)+"/login", b)
	if err != nil {
		return OAuthLoginEvent{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	for {
		var ev OAuthLoginEvent
		if err := dec.Decode(&ev); err != nil {
			return OAuthLoginEvent{}, fmt.Errorf("admin: oauth login: %w", err)
		}
		switch {
		case ev.Error != "":
			return ev, errors.New("oauth login: " + ev.Error)
		case ev.AuthURL != "":
			onURL(ev.AuthURL)
		case ev.Done:
			return ev, nil
		}
	}
}
