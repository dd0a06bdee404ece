// Package generic is a venue described entirely by configuration: an
// operations table and one of the signing schemes of package sign (header
// key, bearer, basic, query key, HMAC template, RFC 9421, Ed25519 header
// signature, AWS SigV4) or OAuth 2.0 bearer tokens. It serves venues with
// no public documentation, where the user describes the scheme (the BetPro
// Exchange case), and is the base of the stapi venue.
package generic

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/venue"
)

// Schemes.
const (
	SchemeHeader  = "header"
	SchemeBearer  = "bearer"
	SchemeBasic   = "basic"
	SchemeQuery   = "query"
	SchemeHMAC    = "hmac"
	SchemeRFC9421 = "rfc9421"
	SchemeEd25519 = "ed25519"
	SchemeSigV4   = "sigv4"
	SchemeOAuth2  = "oauth2"
)

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	Operations  venue.Table       // the operations table
	Scheme      string            // one of the schemes above
	// KeyField and SecretField name credential fields.
	KeyField, SecretField string
	// Header carries the key (header scheme; ed25519 key header).
	Header string
	// SignatureHeader carries the ed25519 signature (base64).
	SignatureHeader string
	// QueryParam carries the key (query scheme).
	QueryParam string
	HMAC       sign.HMAC
	RFC9421    sign.MessageSigner
	SigV4      sign.SigV4
	// OAuth is the token source for the oauth2 scheme.
	OAuth *session.OAuth
	// Extra are more credential headers bots may not send.
	Extra []string
	Now   func() time.Time
}

// Venue is a configured venue.
type Venue struct {
	o   Options
	now func() time.Time
}

// New validates o and returns the venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("generic: no credentials")
	}
	switch o.Scheme {
	case SchemeHeader:
		if o.Header == "" {
			return nil, errors.New("generic: header scheme needs a header name")
		}
	case SchemeQuery:
		if o.QueryParam == "" {
			return nil, errors.New("generic: query scheme needs a parameter name")
		}
	case SchemeHMAC:
		if err := o.HMAC.Validate(); err != nil {
			return nil, fmt.Errorf("generic: %w", err)
		}
	case SchemeRFC9421:
		if o.RFC9421.Label == "" || o.RFC9421.Algorithm == "" {
			return nil, errors.New("generic: rfc9421 needs a label and an algorithm")
		}
	case SchemeEd25519:
		if o.SignatureHeader == "" {
			o.SignatureHeader = "X-Signature"
		}
	case SchemeSigV4:
		if o.SigV4.Region == "" || o.SigV4.Service == "" {
			return nil, errors.New("generic: sigv4 needs region and service")
		}
	case SchemeOAuth2:
		if o.OAuth == nil {
			return nil, errors.New("generic: oauth2 needs a token source")
		}
	case SchemeBearer, SchemeBasic:
	default:
		return nil, fmt.Errorf("generic: unknown scheme %q", o.Scheme)
	}
	v := &Venue{o: o, now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) {
	return v.o.Operations.Lookup(r.Method, r.Path)
}

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string {
	h := []string{"Authorization"}
	for _, s := range []string{v.o.Header, v.o.SignatureHeader, v.o.HMAC.KeyHeader, v.o.HMAC.SignatureHeader,
		v.o.HMAC.TimestampHeader, v.o.HMAC.NonceHeader} {
		if s != "" {
			h = append(h, s)
		}
	}
	if v.o.Scheme == SchemeRFC9421 {
		h = append(h, "Signature", "Signature-Input")
	}
	if v.o.Scheme == SchemeSigV4 {
		h = append(h, "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256")
	}
	return append(h, v.o.Extra...)
}

// PublicHeaders implements venue.PublicHeaders: the HMAC timestamp and
// nonce headers and SigV4's date and payload hash are not secret. Keys,
// signatures, session tokens, Signature-Input (it may name the key) and
// the Extra headers are.
func (v *Venue) PublicHeaders() []string {
	var h []string
	secret := []string{"Authorization", v.o.Header, v.o.SignatureHeader, v.o.HMAC.KeyHeader, v.o.HMAC.SignatureHeader}
	for _, s := range []string{v.o.HMAC.TimestampHeader, v.o.HMAC.NonceHeader} {
		// A header configured both ways stays secret.
		if s != "" && !slices.ContainsFunc(secret, func(k string) bool { return strings.EqualFold(k, s) }) {
			h = append(h, s)
		}
	}
	if v.o.Scheme == SchemeSigV4 {
		h = append(h, "X-Amz-Date", "X-Amz-Content-Sha256")
	}
	return h
}

func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	if v.o.Scheme == SchemeOAuth2 {
		t, err := v.o.OAuth.Token(ctx)
		if err != nil {
			return err
		}
		venue.SetSession(ctx, t)
		v.o.OAuth.Apply(out, t)
		return nil
	}
	now := v.now()
	return v.o.Credentials(ctx, func(c venue.Credential) error {
		key, err := field(c, v.o.KeyField)
		if err != nil && v.o.Scheme != SchemeRFC9421 && v.o.Scheme != SchemeEd25519 {
			return err
		}
		sec := func() (secret.Value, error) { return field(c, v.o.SecretField) }
		switch v.o.Scheme {
		case SchemeHeader:
			return sign.HeaderKey(out, v.o.Header, key)
		case SchemeBearer:
			return sign.Bearer(out, key)
		case SchemeQuery:
			return sign.QueryKey(out, v.o.QueryParam, key)
		case SchemeBasic:
			s, err := sec()
			if err != nil {
				return err
			}
			return sign.Basic(out, key, s)
		case SchemeHMAC:
			s, err := sec()
			if err != nil {
				return err
			}
			return v.o.HMAC.Sign(out, body, key, s, now, nonce())
		case SchemeRFC9421:
			s, err := sec()
			if err != nil {
				return err
			}
			ms := v.o.RFC9421
			if ms.KeyID == "" && !key.IsZero() {
				ms.KeyID = string(key.Reveal())
			}
			return ms.Sign(out, body, s, now, nonce())
		case SchemeEd25519:
			if _, err := sec(); err != nil {
				return err
			}
			ts := fmt.Sprint(now.UnixMilli())
			msg := append([]byte(ts+out.Method+out.URL.RequestURI()), body...)
			sig, err := venue.SignEd25519(c, v.o.SecretField, msg)
			if err != nil {
				return err
			}
			if v.o.Header != "" && !key.IsZero() {
				out.Header.Set(v.o.Header, string(key.Reveal()))
			}
			out.Header.Set("X-Timestamp", ts)
			out.Header.Set(v.o.SignatureHeader, base64.StdEncoding.EncodeToString(sig))
			return nil
		case SchemeSigV4:
			s, err := sec()
			if err != nil {
				return err
			}
			tokenV, _ := c.Field("session_token")
			return v.o.SigV4.Sign(out, body, key, s, tokenV, now)
		}
		return fmt.Errorf("generic: unknown scheme %q", v.o.Scheme)
	})
}

func field(c venue.Credential, name string) (secret.Value, error) {
	if name == "" {
		return secret.Value{}, errors.New("generic: no credential field configured")
	}
	return c.Field(name)
}

// SessionExpired implements venue.Session (oauth2: a 401 answer).
func (v *Venue) SessionExpired(resp *http.Response) bool {
	return v.o.Scheme == SchemeOAuth2 && resp.StatusCode == http.StatusUnauthorized
}

// RefreshSession implements venue.Session.
func (v *Venue) RefreshSession(ctx context.Context) error {
	if v.o.Scheme != SchemeOAuth2 {
		return nil
	}
	if used, ok := venue.SessionUsed(ctx); ok {
		if t, ok := used.(session.Token); ok {
			v.o.OAuth.Invalidate(t)
		}
	}
	_, err := v.o.OAuth.Token(ctx)
	return err
}

var (
	_ venue.Venue   = (*Venue)(nil)
	_ venue.Session = (*Venue)(nil)
)
