// Package dmarket is the DMarket venue: Ed25519 request signatures.
//
// Each request carries X-Api-Key (the public key, hex), X-Sign-Date (unix
// seconds, set by keystile) and X-Request-Sign: "dmar ed25519 " + hex of
// the Ed25519 signature over METHOD + path (percent-decoded, as the server
// rebuilds it) + "?" + query as sent (when present) + body + X-Sign-Date,
// with no separators. The credential's secret_key is 128 hex characters:
// seed || public key, Go's ed25519.PrivateKey layout.
package dmarket

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// Credential fields.
const (
	FieldPublicKey = "public_key"
	FieldSecretKey = "secret_key"
)

// Operations is DMarket's operations table.
var Operations = venue.Table{
	{Method: "GET", Path: "/account/v1/balance", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/account/v1/user", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/marketplace-api/v1/user-inventory", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/exchange/v1/market/items", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/price-aggregator/v1/aggregated-prices", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/marketplace-api/v1/cumulative-price-levels", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/exchange/v1/customized-fees", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/marketplace-api/v1/user-targets", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/marketplace-api/v1/user-offers", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/exchange/v1/user/offers", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/marketplace-api/v1/user-targets/create", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/marketplace-api/v1/user-offers/create", Op: venue.OpOrderPlace},
	{Method: "PATCH", Path: "/exchange/v1/offers-buy", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/marketplace-api/v1/user-targets/delete", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/marketplace-api/v1/user-offers/delete", Op: venue.OpOrderCancel},
	{Method: "DELETE", Path: "/exchange/v1/offers", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/exchange/v1/withdraw-assets", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/marketplace-api/v1/withdraw-assets", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/account/v1/withdraw", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/exchange/v1/deposit-assets", Op: venue.OpWalletTransfer},
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	Now         func() time.Time  // if nil, time.Now
}

// Venue is a DMarket venue.
type Venue struct {
	creds venue.Credentials
	now   func() time.Time
}

// New returns a DMarket venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, fmt.Errorf("dmarket: no credentials")
	}
	v := &Venue{creds: o.Credentials, now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) { return Operations.Lookup(r.Method, r.Path) }

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string {
	return []string{"X-Api-Key", "X-Sign-Date", "X-Request-Sign"}
}

// PublicHeaders implements venue.PublicHeaders: X-Sign-Date is not secret
// (the key and the signature are).
func (v *Venue) PublicHeaders() []string { return []string{"X-Sign-Date"} }

// SignedString builds the bytes DMarket signs.
func SignedString(method, decodedPath, rawQuery string, body []byte, date string) []byte {
	b := make([]byte, 0, len(method)+len(decodedPath)+len(rawQuery)+len(body)+len(date)+1)
	b = append(b, method...)
	b = append(b, decodedPath...)
	if rawQuery != "" {
		b = append(b, '?')
		b = append(b, rawQuery...)
	}
	b = append(b, body...)
	return append(b, date...)
}

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	date := strconv.FormatInt(v.now().Unix(), 10)
	msg := SignedString(out.Method, out.URL.Path, out.URL.RawQuery, body, date)
	return v.creds(ctx, func(c venue.Credential) error {
		pub, err := c.Field(FieldPublicKey)
		if err != nil {
			return err
		}
		sig, err := venue.SignEd25519(c, FieldSecretKey, msg)
		if err != nil {
			return fmt.Errorf("dmarket: sign: %w", err)
		}
		out.Header.Set("X-Api-Key", string(pub.Reveal()))
		out.Header.Set("X-Sign-Date", date)
		out.Header.Set("X-Request-Sign", "dmar ed25519 "+hex.EncodeToString(sig))
		return nil
	})
}

var _ venue.Venue = (*Venue)(nil)
