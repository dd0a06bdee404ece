package alert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// HTTPOptions configure NewHTTPClient.
type HTTPOptions struct {
	// CAFile is a PEM bundle trusted instead of the system roots; "" for
	// the system roots.
	CAFile string
	// Timeout bounds a whole request; the Dispatcher also bounds each
	// attempt with a context. Default 10s.
	Timeout time.Duration
}

// NewHTTPClient returns the client HTTP sinks use: TLS 1.2 or newer with
// certificate verification, no proxy from the environment (a proxy would
// see the sink's credentials), redirects never followed (a redirect could
// carry a request elsewhere), bounded timeouts and response sizes.
func NewHTTPClient(o HTTPOptions) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile) // #nosec G304 -- the operator names the CA file
		if err != nil {
			return nil, fmt.Errorf("alert: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("alert: ca_file %s holds no PEM certificate", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	d := &net.Dialer{Timeout: min(o.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			TLSClientConfig:       tc,
			TLSHandshakeTimeout:   min(o.Timeout, 10*time.Second),
			ResponseHeaderTimeout: o.Timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
	}, nil
}

// CheckURL parses a sink URL and enforces the rule every sink follows:
// https://, or http:// only to a loopback host (127.0.0.0/8, ::1,
// localhost); no userinfo, no fragment. Its errors never repeat the URL
// (for Slack and Telegram the URL holds the credential).
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("alert: invalid URL")
	}
	switch {
	case u.User != nil:
		return nil, errors.New("alert: URL must not contain userinfo")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("alert: URL must not contain a fragment")
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		return nil, errors.New("alert: URL must be absolute with a host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("alert: URL must be https:// (plain http only to a loopback host, got host %q)", u.Hostname())
		}
	default:
		return nil, errors.New("alert: URL must be https:// (plain http only to a loopback host)")
	}
	return u, nil
}

// IsLoopback reports whether host is localhost or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxAnswer bounds the answer bodies read from sinks.
const maxAnswer = 64 << 10

// Do sends req with c and classifies the outcome: 2xx is success (the
// body, at most 64 KiB, is returned); 408, 429 and 5xx are retryable
// (with the answer's Retry-After); 3xx and the other 4xx are permanent;
// a transport failure is retryable. The error never contains the
// request's URL: net/http puts it in *url.Error, and for some sinks it is
// the credential.
func Do(c *http.Client, req *http.Request) ([]byte, error) {
	resp, err := c.Do(req) // #nosec G704 -- sink URLs come from the operator's config or secret store, checked by CheckURL
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, &DeliveryError{Step: "post", Err: err}
		}
		return nil, &DeliveryError{Step: "post", Err: stripURL(err, req.URL)}
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if rerr != nil {
			// The sink accepted the request; a broken answer body does
			// not make it undelivered.
			return nil, nil
		}
		return body, nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return body, &DeliveryError{Step: "answer", Status: code, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), time.Now()), Err: errors.New(http.StatusText(code))}
	case code >= 300 && code < 400:
		return body, &DeliveryError{Step: "answer", Status: code, Permanent: true, Err: errors.New("redirects are not followed: configure the final URL")}
	default:
		return body, &DeliveryError{Step: "answer", Status: code, Permanent: true, Err: errors.New(http.StatusText(code))}
	}
}

// stripURL removes any copy of u's path and query from err's text.
func stripURL(err error, u *url.URL) error {
	msg := err.Error()
	for _, s := range []string{u.String(), u.RequestURI(), u.EscapedPath(), u.Path, u.RawQuery} {
		if len(s) > 1 {
			msg = strings.ReplaceAll(msg, s, "/…")
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// RetryAfter parses an HTTP Retry-After value (seconds or an HTTP date)
// at now; 0 when absent or unparsable.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > 86400 {
			n = 86400
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
