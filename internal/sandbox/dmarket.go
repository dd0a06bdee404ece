package sandbox

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DMarket verification errors.
var (
	ErrDMarketMissing   = errors.New("sandbox: dmarket: missing authentication header")
	ErrDMarketKey       = errors.New("sandbox: dmarket: unknown api key")
	ErrDMarketSignature = errors.New("sandbox: dmarket: invalid signature")
	ErrDMarketDate      = errors.New("sandbox: dmarket: X-Sign-Date outside the 2 minute window")
	ErrDMarketMalformed = errors.New("sandbox: dmarket: malformed X-Request-Sign")
)

// DMarketWindow is how far X-Sign-Date may be from the server clock.
const DMarketWindow = 2 * time.Minute

const dmarketSignPrefix = "dmar ed25519 "

// ParseDMarketSign parses an X-Request-Sign value, "dmar ed25519 <hex>",
// into the 64-byte signature.
func ParseDMarketSign(v string) ([]byte, error) {
	h, ok := strings.CutPrefix(v, dmarketSignPrefix)
	if !ok {
		return nil, ErrDMarketMalformed
	}
	sig, err := hex.DecodeString(h)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, ErrDMarketMalformed
	}
	return sig, nil
}

// FormatDMarketSign is the inverse of ParseDMarketSign.
func FormatDMarketSign(sig []byte) string { return dmarketSignPrefix + hex.EncodeToString(sig) }

// DMarketSignedString returns the bytes DMarket signs: METHOD + path (as the
// server decodes it) + ("?" + raw query, if any) + body + X-Sign-Date.
func DMarketSignedString(method, path, rawQuery string, body []byte, date string) []byte {
	b := make([]byte, 0, len(method)+len(path)+len(rawQuery)+len(body)+len(date)+1)
	b = append(b, method...)
	b = append(b, path...)
	if rawQuery != "" {
		b = append(b, '?')
		b = append(b, rawQuery...)
	}
	b = append(b, body...)
	return append(b, date...)
}

// VerifyDMarket checks DMarket's Ed25519 request signature. path is the
// percent-decoded path (r.URL.Path), rawQuery the query as sent. X-Api-Key
// must be the hex public key, X-Sign-Date unix seconds within DMarketWindow
// of now, X-Request-Sign "dmar ed25519 <hex signature>".
func VerifyDMarket(method, path, rawQuery string, body []byte, headers http.Header, pub ed25519.PublicKey, now time.Time) error {
	key, date, sign := headers.Get("X-Api-Key"), headers.Get("X-Sign-Date"), headers.Get("X-Request-Sign")
	if key == "" || date == "" || sign == "" {
		return ErrDMarketMissing
	}
	kb, err := hex.DecodeString(key)
	if err != nil || subtle.ConstantTimeCompare(kb, pub) != 1 {
		return ErrDMarketKey
	}
	secs, err := strconv.ParseInt(date, 10, 64)
	if err != nil {
		return ErrDMarketDate
	}
	if d := now.Sub(time.Unix(secs, 0)); d > DMarketWindow || d < -DMarketWindow {
		return ErrDMarketDate
	}
	sig, err := ParseDMarketSign(sign)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, DMarketSignedString(method, path, rawQuery, body, date), sig) {
		return ErrDMarketSignature
	}
	return nil
}

type dmarket struct {
	vs     *venueServer
	pubHex string
	priv   ed25519.PrivateKey
}

func newDMarket(vs *venueServer, creds map[string]string) (*dmarket, error) {
	d := &dmarket{vs: vs}
	if sk := creds["secret_key"]; sk != "" {
		b, err := hex.DecodeString(sk)
		if err != nil || len(b) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("%w: dmarket secret_key must be 128 hex characters", ErrBadCredentials)
		}
		d.priv = ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if subtle.ConstantTimeCompare(d.priv, b) != 1 {
			return nil, fmt.Errorf("%w: dmarket secret_key: public half does not match seed", ErrBadCredentials)
		}
	} else {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("sandbox: dmarket key: %w", err)
		}
		d.priv = priv
	}
	pub, _ := d.priv.Public().(ed25519.PublicKey)
	d.pubHex = hex.EncodeToString(pub)
	if pk := creds["public_key"]; pk != "" && !strings.EqualFold(pk, d.pubHex) {
		return nil, fmt.Errorf("%w: dmarket public_key does not match secret_key", ErrBadCredentials)
	}
	return d, nil
}

func (d *dmarket) credentials() map[string]string {
	return map[string]string{"public_key": d.pubHex, "secret_key": hex.EncodeToString(d.priv)}
}
func (d *dmarket) credentialHeaders() []string {
	return []string{"X-Api-Key", "X-Sign-Date", "X-Request-Sign"}
}
func (d *dmarket) expireSessions() {}

func dmarketError(w http.ResponseWriter, code int, c, msg string) {
	writeJSON(w, code, map[string]string{"code": c, "message": msg})
}

func (d *dmarket) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	route := r.Method + " " + r.URL.Path
	ops := map[string]string{
		"GET /account/v1/balance":                      "account.balance",
		"GET /exchange/v1/market/items":                "market.items",
		"POST /marketplace-api/v1/user-targets/create": "targets.create",
		"POST /marketplace-api/v1/user-targets/delete": "targets.delete",
		"GET /marketplace-api/v1/user-targets":         "targets.list",
	}
	op, ok := ops[route]
	if !ok {
		d.vs.count("not_found")
		dmarketError(w, http.StatusNotFound, "NotFound", "route not found")
		return
	}
	d.vs.count(op)
	pub, _ := d.priv.Public().(ed25519.PublicKey)
	if err := VerifyDMarket(r.Method, r.URL.Path, r.URL.RawQuery, body, r.Header, pub, d.vs.clock()); err != nil {
		d.vs.authFailure()
		switch {
		case errors.Is(err, ErrDMarketDate):
			dmarketError(w, http.StatusUnauthorized, "RequestExpired", "request signature date is expired or invalid")
		case errors.Is(err, ErrDMarketKey), errors.Is(err, ErrDMarketMissing):
			dmarketError(w, http.StatusUnauthorized, "Unauthorized", "invalid api key or missing authentication headers")
		default:
			dmarketError(w, http.StatusUnauthorized, "InvalidSignature", "request signature is invalid")
		}
		return
	}
	switch op {
	case "account.balance":
		writeJSON(w, http.StatusOK, map[string]string{
			"usd": "150000", "usdAvailableToWithdraw": "150000", "dmc": "0", "dmcAvailableToWithdraw": "0",
		})
	case "market.items":
		writeJSON(w, http.StatusOK, map[string]any{
			"objects": []any{
				map[string]any{"itemId": "7f1e0b4c-0000-4000-8000-000000000001", "title": "AK-47 | Redline", "gameId": "a8db", "price": map[string]string{"USD": "1520"}},
				map[string]any{"itemId": "7f1e0b4c-0000-4000-8000-000000000002", "title": "AWP | Asiimov", "gameId": "a8db", "price": map[string]string{"USD": "8990"}},
			},
			"total": map[string]int{"items": 2}, "cursor": "",
		})
	case "targets.create":
		signedAt, _ := strconv.ParseInt(r.Header.Get("X-Sign-Date"), 10, 64) // verified above
		var req struct {
			GameID  string
			Targets []struct {
				Amount string
				Price  struct {
					Currency string
					Amount   json.Number
				}
				Title string
			}
		}
		if err := json.Unmarshal(body, &req); err != nil || req.GameID == "" || len(req.Targets) == 0 {
			dmarketError(w, http.StatusBadRequest, "BadRequest", "invalid targets request")
			return
		}
		var res []any
		for _, t := range req.Targets {
			o := d.vs.addOrder("target-", Order{Instrument: t.Title, Side: "buy", Price: t.Price.Amount.String(), Size: t.Amount})
			// CreatedAt (unix seconds) is the request's X-Sign-Date, the
			// second DMarket creates the target in.
			res = append(res, map[string]any{
				"CreateTarget": map[string]any{"Amount": t.Amount, "Price": t.Price, "Title": t.Title, "TargetID": o.ID, "CreatedAt": signedAt},
				"Successful":   true, "Error": nil,
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{"Result": res})
	case "targets.delete":
		var req struct{ Targets []struct{ TargetID string } }
		if err := json.Unmarshal(body, &req); err != nil || len(req.Targets) == 0 {
			dmarketError(w, http.StatusBadRequest, "BadRequest", "invalid targets request")
			return
		}
		var res []any
		for _, t := range req.Targets {
			_, ok := d.vs.cancelOrder(t.TargetID)
			item := map[string]any{"DeleteTarget": map[string]string{"TargetID": t.TargetID}, "Successful": ok, "Error": nil}
			if !ok {
				item["Error"] = map[string]string{"Code": "TargetNotFound", "Message": "target not found"}
			}
			res = append(res, item)
		}
		writeJSON(w, http.StatusOK, map[string]any{"Result": res})
	case "targets.list":
		items := []any{}
		for _, o := range d.vs.openOrders() {
			items = append(items, map[string]any{
				"TargetID": o.ID, "Title": o.Instrument, "Amount": o.Size,
				"Price": map[string]string{"Currency": "USD", "Amount": o.Price}, "Status": "TargetStatusActive",
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{"Items": items, "Total": strconv.Itoa(len(items)), "Cursor": ""})
	}
}

var _ emulator = (*dmarket)(nil)
