// Package betfair is the Betfair Exchange venue: login sessions
// (non-interactive certlogin with a client certificate, or interactive
// login), X-Application + X-Authentication on every call, and the betting
// and account APIs in both REST and JSON-RPC form.
//
// The session is held by session.Betfair (single-flight login, keep-alive,
// logout on Close, login rate cap). An answer saying the session is gone
// (INVALID_SESSION_INFORMATION, NO_SESSION) makes the gateway invalidate the
// exact session that request used, log in once, and re-send once.
// JSON-RPC requests are classified by every method they carry (batches
// included) as their most sensitive one; an unknown method is unmapped.
package betfair

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// Methods maps Betfair API operations to keystile operations.
var Methods = map[string]string{
	"listEventTypes":          venue.OpMarketRead,
	"listCompetitions":        venue.OpMarketRead,
	"listTimeRanges":          venue.OpMarketRead,
	"listEvents":              venue.OpMarketRead,
	"listMarketTypes":         venue.OpMarketRead,
	"listCountries":           venue.OpMarketRead,
	"listVenues":              venue.OpMarketRead,
	"listMarketCatalogue":     venue.OpMarketRead,
	"listMarketBook":          venue.OpMarketRead,
	"listRunnerBook":          venue.OpMarketRead,
	"listMarketProfitAndLoss": venue.OpAccountRead,
	"listCurrentOrders":       venue.OpOrderRead,
	"listClearedOrders":       venue.OpOrderRead,
	"placeOrders":             venue.OpOrderPlace,
	"replaceOrders":           venue.OpOrderPlace,
	"updateOrders":            venue.OpOrderPlace,
	"cancelOrders":            venue.OpOrderCancel,
	"getAccountFunds":         venue.OpAccountRead,
	"getAccountDetails":       venue.OpAccountRead,
	"getAccountStatement":     venue.OpAccountRead,
	"listCurrencyRates":       venue.OpMarketRead,
	"transferFunds":           venue.OpWalletTransfer,
	"createDeveloperAppKeys":  venue.OpAPIKeyManage,
	"getDeveloperAppKeys":     venue.OpAPIKeyManage,
}

// REST path prefixes.
const (
	bettingREST  = "/exchange/betting/rest/v1.0/"
	accountREST  = "/exchange/account/rest/v1.0/"
	bettingRPC   = "/exchange/betting/json-rpc/v1"
	accountRPC   = "/exchange/account/json-rpc/v1"
	rpcNamespace = "SportsAPING/v1.0/"
	accNamespace = "AccountAPING/v1.0/"
)

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	// Login is "certlogin" (default) or "login".
	Login string
	// IdentityURL is the login host (certlogin or login).
	IdentityURL string
	// Transport reaches the identity host (login, keepAlive, logout).
	Transport *upstream.Transport
	// CertTransport builds a transport presenting the client certificate
	// for certlogin.
	CertTransport func(cert *tls.Certificate) (*http.Client, error)
	// Session overrides the session source options (tests).
	Session func(*session.BetfairOptions)
}

// Venue is a Betfair venue.
type Venue struct {
	sess *session.Betfair
}

// New returns a Betfair venue; no login happens until the first request.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("betfair: no credentials")
	}
	so := session.BetfairOptions{
		Credential: venue.FieldMap(o.Credentials, session.FieldAppKey, session.FieldUsername, session.FieldPassword,
			session.FieldClientCert, session.FieldClientKey),
		CertClient: o.CertTransport,
	}
	switch o.Login {
	case "", "certlogin":
		so.Mode = session.BetfairCertLogin
		so.CertIdentityURL = o.IdentityURL
	case "login":
		so.Mode = session.BetfairLogin
	default:
		return nil, errors.New("betfair: login must be certlogin or login")
	}
	so.IdentityURL = o.IdentityURL
	if o.Transport != nil {
		so.HTTPClient = o.Transport.Client()
	}
	if o.Session != nil {
		o.Session(&so)
	}
	s, err := session.NewBetfair(so)
	if err != nil {
		return nil, err
	}
	return &Venue{sess: s}, nil
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	p := r.Path
	switch {
	case strings.HasPrefix(p, bettingREST), strings.HasPrefix(p, accountREST):
		rest := strings.TrimPrefix(strings.TrimPrefix(p, bettingREST), accountREST)
		op, ok := Methods[strings.Trim(rest, "/")]
		return op, ok
	case p == bettingRPC || p == accountRPC || p == bettingRPC+"/" || p == accountRPC+"/":
		return classifyRPC(r.Body)
	}
	return "", false
}

type rpcCall struct {
	Method string `json:"method"`
}

func classifyRPC(body []byte) (string, bool) {
	body = bytes.TrimSpace(body)
	var calls []rpcCall
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &calls); err != nil || len(calls) == 0 {
			return "", false
		}
	} else {
		var c rpcCall
		if err := json.Unmarshal(body, &c); err != nil {
			return "", false
		}
		calls = []rpcCall{c}
	}
	var ops []string
	for _, c := range calls {
		name, ok := strings.CutPrefix(c.Method, rpcNamespace)
		if !ok {
			name, ok = strings.CutPrefix(c.Method, accNamespace)
		}
		op, known := Methods[name]
		if !ok || !known {
			return "", false
		}
		ops = append(ops, op)
	}
	return venue.MostSensitive(ops...), true
}

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string { return []string{"X-Application", "X-Authentication"} }

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, _ []byte) error {
	t, err := v.sess.Token(ctx)
	if err != nil {
		return err
	}
	venue.SetSession(ctx, t)
	v.sess.Apply(out, t)
	return nil
}

// SessionExpired implements venue.Session.
func (v *Venue) SessionExpired(resp *http.Response) bool {
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusOK {
		return false
	}
	b, err := upstream.PeekBody(resp, 64<<10)
	if err != nil {
		return false
	}
	return session.BetfairSessionExpired(resp.StatusCode, b)
}

// RefreshSession implements venue.Session: it invalidates the session the
// failed attempt used and logs in again (once, however many requests failed).
func (v *Venue) RefreshSession(ctx context.Context) error {
	if used, ok := venue.SessionUsed(ctx); ok {
		if t, ok := used.(session.Token); ok {
			v.sess.Invalidate(t)
		}
	}
	_, err := v.sess.Token(ctx)
	return err
}

// Close logs out.
func (v *Venue) Close(ctx context.Context) error { return v.sess.Close(ctx) }

var (
	_ venue.Venue   = (*Venue)(nil)
	_ venue.Session = (*Venue)(nil)
	_ venue.Closer  = (*Venue)(nil)
)
