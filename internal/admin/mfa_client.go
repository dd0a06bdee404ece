package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// ClientMFA supplies a client's second factor for gated requests.
type ClientMFA struct {
	// Session is an admin session (from `keystile mfa login`), presented
	// with every request.
	Session string
	// Code is a TOTP or recovery code (--totp, KEYSTILE_TOTP), presented
	// with the first request that is not a read only: a code is good once.
	Code string
	// Prompt asks the person for a code when the server wants one; nil
	// when nobody can be asked (stdin is not a terminal).
	Prompt func(ctx context.Context, why string) (string, error)
	// SessionRefused is called when the server refused Session (expired,
	// logged out, restarted), e.g. to forget a stored session.
	SessionRefused func()
}

// SetMFA sets the second factor the client presents.
func (c *Client) SetMFA(m ClientMFA) { c.mfa = m }

// maxMFAPrompts bounds how often one request asks for a code.
const maxMFAPrompts = 3

// mfaPromptable are the refusals a new code may fix.
func mfaPromptable(code string) bool {
	switch code {
	case "mfa_required", "mfa_session_invalid", "mfa_invalid", "mfa_replay":
		return true
	}
	return false
}

// send makes one logical request: it adds the bearer token and second
// factor, asks for a code (Prompt) and resends when the server wants one,
// and returns a response with status < 300 (body unread) or an *APIError.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	// Reads are never gated: the code waits for the first other request.
	var code string
	if method != http.MethodGet && method != http.MethodHead {
		code, c.mfa.Code = c.mfa.Code, ""
	}
	for prompts := 0; ; prompts++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if !c.bearer.IsZero() {
			req.Header.Set("Authorization", "Bearer "+string(c.bearer.Reveal()))
		}
		if c.mfa.Session != "" {
			req.Header.Set(HeaderMFASession, c.mfa.Session)
		}
		if code != "" {
			req.Header.Set(HeaderMFACode, code)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && (errno == syscall.ECONNREFUSED || errno == syscall.ENOENT) {
				return nil, fmt.Errorf("%w (socket %s)", ErrNotRunning, c.socket)
			}
			return nil, fmt.Errorf("admin: %w", err)
		}
		if resp.StatusCode < 300 {
			return resp, nil
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, fmt.Errorf("admin: read answer: %w", rerr)
		}
		ae := &APIError{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("admin: server answered %s", resp.Status)}
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		}
		if ae.Code == "mfa_session_invalid" && c.mfa.Session != "" {
			c.mfa.Session = ""
			if c.mfa.SessionRefused != nil {
				c.mfa.SessionRefused()
			}
		}
		if resp.StatusCode != http.StatusUnauthorized || !mfaPromptable(ae.Code) || c.mfa.Prompt == nil || prompts >= maxMFAPrompts {
			return nil, ae
		}
		code, err = c.mfa.Prompt(ctx, ae.Message)
		if err != nil {
			return nil, err
		}
	}
}

// NewRemoteClient returns a client for a TCP admin listener (admin.listen)
// at baseURL: https://host:port, or http://127.0.0.1:port on loopback. It
// presents token (ksa_...) as a bearer token; roots, if set, are the CAs
// trusted for the server's certificate (else the system's).
func NewRemoteClient(baseURL string, token secret.Value, roots *x509.CertPool) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, errors.New("admin: remote admin URL must be https://host:port")
	}
	switch u.Scheme {
	case "https":
	case "http":
		a, err := netip.ParseAddr(u.Hostname())
		if err != nil || !a.Unmap().IsLoopback() {
			return nil, errors.New("admin: a remote admin URL off loopback must be https://")
		}
	default:
		return nil, errors.New("admin: remote admin URL must be https://host:port")
	}
	if _, err := ParseAdminToken(string(token.Reveal())); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   true,
	}
	return &Client{socket: u.Scheme + "://" + u.Host, base: u.Scheme + "://" + u.Host, bearer: token, hc: &http.Client{
		Timeout:       5 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     tr,
	}}, nil
}

// Target names what the client talks to: the socket path or the base URL.
func (c *Client) Target() string { return c.socket }

// MFAStatus fetches the second factor's state.
func (c *Client) MFAStatus(ctx context.Context) (MFAStatus, error) {
	var s MFAStatus
	return s, c.Do(ctx, http.MethodGet, PathMFA, nil, &s)
}

// MFAEnroll starts an enrolment with a client-made secret (base32 text;
// wiped after sending) and recovery codes.
func (c *Client) MFAEnroll(ctx context.Context, secretB32 secret.Value, recovery []string) (MFAStatus, error) {
	defer secretB32.Wipe()
	var s MFAStatus
	return s, c.Do(ctx, http.MethodPost, PathMFA+"/enroll", MFAEnrollRequest{Secret: secretB32.Reveal(), RecoveryCodes: recovery}, &s)
}

// MFAConfirm completes an enrolment with a first code.
func (c *Client) MFAConfirm(ctx context.Context, code string) (MFAStatus, error) {
	var s MFAStatus
	return s, c.Do(ctx, http.MethodPost, PathMFA+"/enroll/confirm", MFACodeRequest{Code: code}, &s)
}

// MFALogin exchanges a code for an admin session.
func (c *Client) MFALogin(ctx context.Context, code string) (MFASessionGrant, error) {
	var g MFASessionGrant
	return g, c.Do(ctx, http.MethodPost, PathMFA+"/login", MFACodeRequest{Code: code}, &g)
}

// MFALogout ends the client's session (SetMFA's Session).
func (c *Client) MFALogout(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, PathMFA+"/logout", struct{}{}, nil)
}

// MFAReset removes the enrolment (a gated action).
func (c *Client) MFAReset(ctx context.Context) (MFAStatus, error) {
	var s MFAStatus
	return s, c.Do(ctx, http.MethodPost, PathMFA+"/reset", struct{}{}, &s)
}

// MFARecoveryCodes replaces the recovery codes (a gated action).
func (c *Client) MFARecoveryCodes(ctx context.Context, recovery []string) (MFAStatus, error) {
	var s MFAStatus
	return s, c.Do(ctx, http.MethodPost, PathMFA+"/recovery-codes", MFARecoveryCodesRequest{RecoveryCodes: recovery}, &s)
}
