package venue_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func TestRefusalKind(t *testing.T) {
	for code, want := range map[string]venue.RefusalKind{
		"unauthorized": venue.RefusedAuth, "forbidden": venue.RefusedAuth, "denied": venue.RefusedDenied,
		"rate_limited": venue.RefusedRateLimit, "too_many_failures": venue.RefusedRateLimit,
		"bad_request": venue.RefusedBadRequest, "too_large": venue.RefusedBadRequest, "method_not_allowed": venue.RefusedBadRequest,
		"outcome_unknown": venue.RefusedUnknownOutcome, "upstream_timeout": venue.RefusedUnknownOutcome,
		"upstream_error": venue.RefusedUnavailable, "audit_unavailable": venue.RefusedUnavailable, "": venue.RefusedUnavailable,
	} {
		if got := (venue.Refusal{Code: code}).Kind(); got != want {
			t.Errorf("Kind(%q) = %d, want %d", code, got, want)
		}
	}
}

// TestShapeRefusal renders each kind of refusal in each exchange's own
// error format and reads it back the way the exchange's SDKs do.
func TestShapeRefusal(t *testing.T) {
	bn, _ := binance.New(binance.Options{Credentials: venuetest.NoCredentials})
	kr, _ := kraken.New(kraken.Options{Credentials: venuetest.NoCredentials, Tier: "none"})
	ok, _ := okx.New(okx.Options{Credentials: venuetest.NoCredentials})
	by, _ := bybit.New(bybit.Options{Credentials: venuetest.NoCredentials})
	cb, _ := coinbase.New(coinbase.Options{Credentials: venuetest.NoCredentials})
	// read extracts the venue's error code and message.
	type reader func(b []byte) (code, msg string, err error)
	jsonFields := func(codeKey, msgKey string) reader {
		return func(b []byte) (string, string, error) {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				return "", "", err
			}
			return fmt.Sprint(m[codeKey]), fmt.Sprint(m[msgKey]), nil
		}
	}
	krakenRead := func(b []byte) (string, string, error) {
		var m struct {
			Error  []string        `json:"error"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(b, &m); err != nil || len(m.Error) != 2 || string(m.Result) != "{}" {
			return "", "", fmt.Errorf("not a kraken error: %s", b)
		}
		return m.Error[0], m.Error[1], nil
	}
	for _, tc := range []struct {
		name   string
		shaper venue.ErrorShaper
		read   reader
		codes  map[string]string // refusal code -> venue code
	}{
		{"binance", bn, jsonFields("code", "msg"), map[string]string{"unauthorized": "-2015", "denied": "-2010", "rate_limited": "-1003", "bad_request": "-1102", "outcome_unknown": "-1007", "upstream_error": "-1001"}},
		{"kraken", kr, krakenRead, map[string]string{"unauthorized": "EAPI:Invalid key", "denied": "EGeneral:Permission denied", "rate_limited": "EAPI:Rate limit exceeded", "bad_request": "EGeneral:Invalid arguments", "outcome_unknown": "EService:Deadline elapsed", "upstream_error": "EService:Unavailable"}},
		{"okx", ok, jsonFields("code", "msg"), map[string]string{"unauthorized": "50114", "denied": "51009", "rate_limited": "50011", "bad_request": "51000", "outcome_unknown": "50004", "upstream_error": "50001"}},
		{"bybit", by, jsonFields("retCode", "retMsg"), map[string]string{"unauthorized": "10003", "denied": "10005", "rate_limited": "10006", "bad_request": "10001", "outcome_unknown": "10000", "upstream_error": "10016"}},
		{"coinbase", cb, jsonFields("error", "message"), map[string]string{"unauthorized": "UNAUTHENTICATED", "denied": "PERMISSION_DENIED", "rate_limited": "RESOURCE_EXHAUSTED", "bad_request": "INVALID_ARGUMENT", "outcome_unknown": "DEADLINE_EXCEEDED", "upstream_error": "UNAVAILABLE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for code, want := range tc.codes {
				r := venue.Refusal{Status: http.StatusForbidden, Code: code, Rule: "policy.p.max_notional", Message: "request refused by keystile policy", RequestID: "req123"}
				status, ct, body := tc.shaper.ShapeRefusal(r)
				if status != r.Status || ct != "application/json" {
					t.Errorf("%s: status %d, content type %q", code, status, ct)
				}
				got, msg, err := tc.read(body)
				if err != nil {
					t.Fatalf("%s: %v", code, err)
				}
				if got != want {
					t.Errorf("%s: venue code %q, want %q", code, got, want)
				}
				if !strings.Contains(msg, "policy.p.max_notional") || !strings.Contains(msg, "req123") || !strings.Contains(msg, "keystile") {
					t.Errorf("%s: message %q lacks keystile's rule and request id", code, msg)
				}
			}
		})
	}
}

func TestRefusalCodes(t *testing.T) {
	c := venue.RefusalCodes{Unavailable: "u", Auth: "a", Denied: "d", RateLimit: "r", BadRequest: "b", UnknownOutcome: "o"}
	for code, want := range map[string]string{"unauthorized": "a", "forbidden": "a", "denied": "d", "rate_limited": "r",
		"too_large": "b", "outcome_unknown": "o", "audit_unavailable": "u", "": "u"} {
		if got := c.Code(venue.Refusal{Code: code}); got != want {
			t.Errorf("%q: %q, want %q", code, got, want)
		}
	}
}
