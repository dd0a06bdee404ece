package upstream

import (
	"fmt"
	"net/http"
	"strings"
)

// Client returns an *http.Client for login and token calls (for example a
// Betfair login or an OAuth 2.0 token request) that uses t and follows a
// redirect only when all of these hold:
//
//   - the target has the same scheme and host:port as the original request;
//   - the redirected request carries no body (a 307/308 answer to a POST
//     would re-send a login form or client secret: refused);
//   - at most 5 redirects.
//
// Every header except a short list of harmless ones (Accept,
// Accept-Language, User-Agent, Cache-Control) is dropped from the redirected
// request, so Authorization, cookies and venue key headers are never
// forwarded, not even to the same host. A refused redirect fails with an
// error wrapping ErrRedirectNotAllowed; the client closes the redirect
// response's body.
//
// The proxy path does not use Client: a RoundTripper never follows
// redirects, so the gateway hands a venue's 3xx answer back unchanged.
func (t *Transport) Client() *http.Client {
	return &http.Client{Transport: t, CheckRedirect: t.checkRedirect}
}

func (t *Transport) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) > t.maxRedirects {
		return fmt.Errorf("upstream: %w: more than %d redirects", ErrRedirectNotAllowed, t.maxRedirects)
	}
	orig := via[0].URL
	if !strings.EqualFold(req.URL.Scheme, orig.Scheme) || !sameHost(req.URL.Scheme, req.URL.Host, orig.Host) {
		return fmt.Errorf("upstream: %w: %s to another origin (%s)", ErrRedirectNotAllowed, orig.Host, req.URL.Host)
	}
	if req.GetBody != nil || (req.Body != nil && req.Body != http.NoBody) {
		return fmt.Errorf("upstream: %w: redirect would re-send the request body", ErrRedirectNotAllowed)
	}
	// Drop every header but a few harmless ones. The client gives each
	// redirected request its own header map, so this touches no caller state.
	for k := range req.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Accept", "Accept-Language", "User-Agent", "Cache-Control":
		default:
			delete(req.Header, k)
		}
	}
	return nil
}

// sameHost compares two URL hosts in canonical host:port form.
func sameHost(scheme, a, b string) bool {
	port := "443"
	if strings.EqualFold(scheme, "http") {
		port = "80"
	}
	ka, errA := urlHostKey(a, port)
	kb, errB := urlHostKey(b, port)
	return errA == nil && errB == nil && ka == kb
}
