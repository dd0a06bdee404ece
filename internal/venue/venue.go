package venue

import (
	"context"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
)

// ID names a configured venue: the first path segment bots use.
type ID string

// Operation names. Scopes and policies refer to these.
const (
	OpMarketRead     = "market.read"
	OpAccountRead    = "account.read"
	OpOrderRead      = "order.read"
	OpOrderPlace     = "order.place"
	OpOrderCancel    = "order.cancel"
	OpOrderCancelAll = "order.cancel_all"
	OpWalletWithdraw = "wallet.withdraw"
	OpWalletTransfer = "wallet.transfer"
	OpAPIKeyManage   = "apikey.manage"
	OpMediaRead      = "media.read"
	OpMediaWrite     = "media.write"
)

// ReadOnly reports whether operation op only reads: its name ends in
// ".read" (market.read, account.read, order.read, and a generic venue's
// own reads). A read changes nothing at the venue whatever the HTTP
// method (Betfair's and Kraken's private reads are POSTs), so the gateway
// need not make an intent record durable before sending it.
func ReadOnly(op string) bool {
	return len(op) > len(".read") && op[len(op)-len(".read"):] == ".read"
}

// Credential is an opened credential: named fields of secret bytes, valid
// only inside the callback that received it. *vault.Credential satisfies it.
type Credential interface {
	Field(name string) (secret.Value, error)
}

// Deriver is implemented by credentials that keep values derived from
// them for as long as the opened credential version (*vault.Credential):
// Derived computes name's value with fn once and returns the kept one
// after. It is safe for concurrent use.
type Deriver interface {
	Derived(name string, fn func() (secret.Value, error)) (secret.Value, error)
}

// SignEd25519 signs msg with the Ed25519 key in c's field (any form
// sign.Ed25519 accepts). The expanded key is derived once per credential
// version when c is a Deriver (the vault's), not on every request.
func SignEd25519(c Credential, field string, msg []byte) ([]byte, error) {
	priv, err := c.Field(field)
	if err != nil {
		return nil, err
	}
	expand := func() (secret.Value, error) { return sign.Ed25519Expand(priv) }
	d, ok := c.(Deriver)
	if !ok {
		return sign.Ed25519(priv, msg)
	}
	key, err := d.Derived("ed25519:"+field, expand)
	if err != nil {
		return nil, err
	}
	return sign.Ed25519Expanded(key, msg)
}

// Credentials opens the venue's credential and calls fn with it.
type Credentials func(ctx context.Context, fn func(Credential) error) error

// Request is the bot's request as the venue sees it, before anything is
// forwarded: Path is the escaped path below the venue prefix (starting with
// '/'), RawQuery the query exactly as sent, Body the complete body.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// Venue is one configured upstream. Implementations are safe for
// concurrent use.
type Venue interface {
	// Classify names the operation of a request (ok=false: unmapped).
	Classify(r *Request) (op string, ok bool)
	// Authenticate adds credentials (keys, timestamps, signatures,
	// session tokens) to out, whose body is exactly body. It is called once
	// per attempt.
	Authenticate(ctx context.Context, out *http.Request, body []byte) error
	// CredentialHeaders are request headers a bot may not send; the gateway
	// removes them before Authenticate (canonical form).
	CredentialHeaders() []string
}

// Session is implemented by venues that hold login sessions or OAuth
// tokens: the gateway refreshes once and retries once when SessionExpired
// says an answer means "your session is gone".
type Session interface {
	SessionExpired(resp *http.Response) bool
	RefreshSession(ctx context.Context) error
}

// Closer is implemented by venues that hold resources (sessions to log out).
type Closer interface {
	Close(ctx context.Context) error
}

// Route maps a method and a path pattern to an operation. Patterns are
// slash-separated; a segment "{x}" matches any one segment, a final "*"
// matches the rest (zero or more segments). Method "*" matches any method.
// Auth says how the venue authenticates the route (AuthSigned, the zero
// value, AuthKey or AuthNone; see Table.Public).
type Route struct {
	Method string
	Path   string
	Op     string
	Auth   int
}

// Table is an ordered operations table: the first matching route wins.
type Table []Route

// Lookup returns the operation of method and path (the escaped path; a
// trailing slash is ignored).
func (t Table) Lookup(method, path string) (string, bool) {
	r, ok := t.Find(method, path)
	return r.Op, ok
}

func match(pattern, path string) bool {
	for {
		if pattern == "*" {
			return true
		}
		pseg, prest, pmore := strings.Cut(pattern, "/")
		seg, rest, more := strings.Cut(path, "/")
		if pseg == "*" && !pmore {
			return true
		}
		if path == "" && pattern != "" {
			return false
		}
		if !(len(pseg) > 1 && pseg[0] == '{' && pseg[len(pseg)-1] == '}') && pseg != seg {
			return false
		}
		if !pmore || !more {
			if pmore && prest == "*" {
				return true
			}
			return pmore == more
		}
		pattern, path = prest, rest
	}
}
