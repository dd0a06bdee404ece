package venue

// Refusal is keystile's own refusal of a bot's request (a policy or scope
// denial, a bad token, a rate limit, an upstream failure keystile reports)
// as the gateway answered it: HTTP status, stable error code
// ("unauthorized", "forbidden", "denied", "rate_limited", "bad_request",
// "outcome_unknown", ...), the rule that decided, the fixed public message
// and the request id. It never holds a secret.
type Refusal struct {
	Status    int
	Code      string
	Rule      string
	Message   string
	RequestID string
}

// Detail is the refusal as one line for a venue's message field:
// "keystile: <message> (rule <rule>, request <id>)".
func (r Refusal) Detail() string {
	s := "keystile: " + r.Message
	switch {
	case r.Rule != "" && r.RequestID != "":
		s += " (rule " + r.Rule + ", request " + r.RequestID + ")"
	case r.Rule != "":
		s += " (rule " + r.Rule + ")"
	case r.RequestID != "":
		s += " (request " + r.RequestID + ")"
	}
	return s
}

// ErrorShaper is implemented by venues whose SDKs only understand the
// venue's own error format. In forward-proxy mode (an unmodified SDK behind
// HTTPS_PROXY) keystile's refusals are rendered with ShapeRefusal, so that
// the SDK raises its usual exchange error (an authentication error, a
// permission or order error, a rate limit) carrying keystile's message,
// rule and request id, instead of failing to parse keystile's JSON. The
// HTTP status stays keystile's unless the venue documents another one for
// such errors. ShapeRefusal must not block; the body holds nothing but
// what r holds (and the venue's own constants, such as a server time).
type ErrorShaper interface {
	ShapeRefusal(r Refusal) (status int, contentType string, body []byte)
}

// RefusalKind groups refusal codes by what an SDK should do about them,
// which is what a venue's error code tells it.
type RefusalKind int

// Kinds of refusal.
const (
	// RefusedUnavailable: keystile or the venue cannot serve the request
	// now (upstream unreachable, audit log or credential unavailable, a
	// twin order in progress); nothing was done, retrying later is safe.
	RefusedUnavailable RefusalKind = iota
	// RefusedAuth: the token is missing, invalid, expired, revoked,
	// frozen, or not valid for this venue, address or environment.
	RefusedAuth
	// RefusedDenied: the token's scopes or the policy refuse the request
	// (including unmapped routes).
	RefusedDenied
	// RefusedRateLimit: a rate limit (keystile's, the venue key's, or the
	// failed-authentication limit); retry after Retry-After.
	RefusedRateLimit
	// RefusedBadRequest: the request is malformed or too large.
	RefusedBadRequest
	// RefusedUnknownOutcome: the request left and its outcome is unknown
	// (or a read timed out): check before retrying a write.
	RefusedUnknownOutcome
)

// Kind classifies the refusal by its code.
func (r Refusal) Kind() RefusalKind {
	switch r.Code {
	case "unauthorized", "forbidden":
		return RefusedAuth
	case "denied":
		return RefusedDenied
	case "rate_limited", "too_many_failures":
		return RefusedRateLimit
	case "bad_request", "too_large", "method_not_allowed", "unknown_venue", "idempotency_key_reused", "misdirected":
		return RefusedBadRequest
	case "outcome_unknown", "upstream_timeout":
		return RefusedUnknownOutcome
	default:
		return RefusedUnavailable
	}
}

// RefusalCodes is an ErrorShaper's table: the venue's own error code (or
// status name) for each kind of refusal, as the venue documents it.
type RefusalCodes struct {
	Unavailable, Auth, Denied, RateLimit, BadRequest, UnknownOutcome string
}

// Code returns the venue's code for r's kind.
func (c RefusalCodes) Code(r Refusal) string {
	switch r.Kind() {
	case RefusedAuth:
		return c.Auth
	case RefusedDenied:
		return c.Denied
	case RefusedRateLimit:
		return c.RateLimit
	case RefusedBadRequest:
		return c.BadRequest
	case RefusedUnknownOutcome:
		return c.UnknownOutcome
	}
	return c.Unavailable
}
