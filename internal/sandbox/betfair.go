package sandbox

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// Betfair limits.
const (
	// BetfairLoginLimit is how many logins per rolling minute are allowed
	// before TEMPORARY_BAN_TOO_MANY_REQUESTS.
	BetfairLoginLimit = 100
	betfairRESTPrefix = "/exchange/betting/rest/v1.0/"
	betfairAcctPrefix = "/exchange/account/rest/v1.0/"
)

// ErrJSONRPC is returned by ParseJSONRPC for a body that is not a JSON-RPC
// 2.0 request or batch.
var ErrJSONRPC = errors.New("sandbox: betfair: malformed json-rpc request")

// RPCCall is one JSON-RPC 2.0 request.
type RPCCall struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	ID      json.RawMessage `json:"id,omitempty"`
}

// ParseJSONRPC decodes a JSON-RPC request body: one call object or a
// non-empty array of them (batch). Every call must have jsonrpc "2.0" and a
// method.
func ParseJSONRPC(body []byte) (calls []RPCCall, batch bool, err error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return nil, false, ErrJSONRPC
	}
	if t[0] == '[' {
		batch = true
		if err := json.Unmarshal(t, &calls); err != nil || len(calls) == 0 {
			return nil, true, ErrJSONRPC
		}
	} else {
		var c RPCCall
		if err := json.Unmarshal(t, &c); err != nil {
			return nil, false, ErrJSONRPC
		}
		calls = []RPCCall{c}
	}
	for _, c := range calls {
		if c.JSONRPC != "2.0" || c.Method == "" {
			return nil, batch, ErrJSONRPC
		}
	}
	return calls, batch, nil
}

// apingError is a Betfair API-NG exception.
type apingError struct {
	code  string // errorCode, e.g. INVALID_SESSION_INFORMATION
	fault string // faultstring, e.g. ANGX-0003
}

var (
	errInvalidSession = apingError{"INVALID_SESSION_INFORMATION", "ANGX-0003"}
	errInvalidAppKey  = apingError{"INVALID_APP_KEY", "ANGX-0004"}
	errInvalidInput   = apingError{"INVALID_INPUT_DATA", "ANGX-0002"}
)

type betfairSession struct{ expires time.Time }

type betfair struct {
	vs       *venueServer
	appKey   secret.Value
	username secret.Value
	password secret.Value
	cert     []byte // DER of the recognised client certificate (TLS only)
	certPEM  string
	keyPEM   string
	ttl      time.Duration

	mu       sync.Mutex
	sessions map[string]betfairSession
	logins   []time.Time // recent login times for the rate limit
}

func newBetfair(vs *venueServer, creds map[string]string, ttl time.Duration, pki *testPKI) (*betfair, error) {
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	b := &betfair{vs: vs, ttl: ttl, sessions: map[string]betfairSession{},
		appKey:   secret.FromString(creds["app_key"]),
		username: secret.FromString(creds["username"]),
		password: secret.FromString(creds["password"]),
		certPEM:  creds["client_cert"], keyPEM: creds["client_key"],
	}
	if b.appKey.IsZero() {
		b.appKey = secret.FromString(randHex(8))
	}
	if b.username.IsZero() {
		b.username = secret.FromString("sandbox_" + randHex(4))
	}
	if b.password.IsZero() {
		b.password = secret.FromString(randHex(12))
	}
	if b.certPEM == "" && pki != nil {
		b.certPEM, b.keyPEM = string(pki.clientCert), string(pki.clientKey)
	}
	if b.certPEM != "" {
		der, err := firstCertDER([]byte(b.certPEM))
		if err != nil {
			return nil, fmt.Errorf("%w: betfair client_cert: %w", ErrBadCredentials, err)
		}
		b.cert = der
	}
	return b, nil
}

func (b *betfair) credentials() map[string]string {
	c := map[string]string{
		"app_key": string(b.appKey.Reveal()), "username": string(b.username.Reveal()),
		"password": string(b.password.Reveal()),
	}
	if b.certPEM != "" {
		c["client_cert"], c["client_key"] = b.certPEM, b.keyPEM
	}
	return c
}
func (b *betfair) credentialHeaders() []string {
	return []string{"X-Application", "X-Authentication", "Authorization"}
}
func (b *betfair) expireSessions() {
	b.mu.Lock()
	clear(b.sessions)
	b.mu.Unlock()
}

// parseForm parses an application/x-www-form-urlencoded body.
func parseForm(r *http.Request, body []byte) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("sandbox: content type %q: not a form", mt)
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("sandbox: parse form: %w", err)
	}
	return v, nil
}

func urlQueryUnescape(s string) (string, error) { return url.QueryUnescape(s) }

var b64 = base64.StdEncoding

// firstCertDER returns the DER of the first CERTIFICATE block in PEM data.
func firstCertDER(data []byte) ([]byte, error) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, errors.New("no CERTIFICATE block")
		}
		if blk.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				return nil, err
			}
			return blk.Bytes, nil
		}
	}
}

func (b *betfair) appKeyOK(r *http.Request) bool {
	return b.appKey.EqualBytes([]byte(r.Header.Get("X-Application")))
}

// sessionOK reports whether the X-Authentication token is a live session.
func (b *betfair) sessionOK(r *http.Request) bool {
	tok := r.Header.Get("X-Authentication")
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[tok]
	return ok && b.vs.clock().Before(s.expires)
}

// rateLimited records a login attempt and reports whether more than
// BetfairLoginLimit happened in the last minute.
func (b *betfair) rateLimited() bool {
	now := b.vs.clock()
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.logins[:0]
	for _, t := range b.logins {
		if now.Sub(t) < time.Minute {
			kept = append(kept, t)
		}
	}
	b.logins = append(kept, now)
	return len(b.logins) > BetfairLoginLimit
}

func (b *betfair) mint() string {
	tok := randToken()
	b.mu.Lock()
	b.sessions[tok] = betfairSession{expires: b.vs.clock().Add(b.ttl)}
	b.mu.Unlock()
	return tok
}

// randToken returns a Betfair-looking session token (base64 of 32 bytes).
func randToken() string {
	return strings.TrimRight(b64.EncodeToString([]byte(randHex(16))), "=")
}

func (b *betfair) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	p := r.URL.Path
	switch {
	case p == "/api/login" || p == "/api/certlogin":
		b.login(w, r, body, p == "/api/certlogin")
	case p == "/api/keepAlive" || p == "/api/logout":
		b.keepAliveOrLogout(w, r, p == "/api/logout")
	case p == "/exchange/betting/json-rpc/v1" || p == "/exchange/account/json-rpc/v1":
		b.jsonRPC(w, r, body)
	case strings.HasPrefix(p, betfairRESTPrefix) || strings.HasPrefix(p, betfairAcctPrefix):
		op := strings.Trim(strings.TrimPrefix(strings.TrimPrefix(p, betfairRESTPrefix), betfairAcctPrefix), "/")
		b.vs.count(op)
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "POST required"})
			return
		}
		if e, ok := b.check(r); !ok {
			b.vs.authFailure()
			b.restError(w, e)
			return
		}
		res, e := b.call(op, body)
		if e != nil {
			b.restError(w, *e)
			return
		}
		writeJSON(w, http.StatusOK, res)
	default:
		b.vs.count("not_found")
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "not found"})
	}
}

// check applies app key then session checks.
func (b *betfair) check(r *http.Request) (apingError, bool) {
	if !b.appKeyOK(r) {
		return errInvalidAppKey, false
	}
	if !b.sessionOK(r) {
		return errInvalidSession, false
	}
	return apingError{}, true
}

func (b *betfair) restError(w http.ResponseWriter, e apingError) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"detail": map[string]any{"APINGException": map[string]string{
			"errorCode": e.code, "errorDetails": "", "requestUUID": "sandbox-" + randHex(8),
		}},
		"faultcode": "Client", "faultstring": e.fault,
	})
}

func (b *betfair) login(w http.ResponseWriter, r *http.Request, body []byte, cert bool) {
	b.vs.login()
	if cert {
		b.vs.count("certlogin")
	} else {
		b.vs.count("login")
	}
	reply := func(status, errCode string) {
		if status != "SUCCESS" {
			b.vs.authFailure()
		}
		tok := ""
		if status == "SUCCESS" {
			tok = b.mint()
		}
		if cert {
			out := map[string]string{"loginStatus": status}
			if errCode != "" {
				out["loginStatus"] = errCode
			} else {
				out["sessionToken"] = tok
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"token": tok, "product": r.Header.Get("X-Application"), "status": status, "error": errCode,
		})
	}
	if r.Method != http.MethodPost {
		reply("FAIL", "INPUT_VALIDATION_ERROR")
		return
	}
	if b.rateLimited() {
		reply("FAIL", "TEMPORARY_BAN_TOO_MANY_REQUESTS")
		return
	}
	if !b.appKeyOK(r) {
		reply("FAIL", "INVALID_APP_KEY")
		return
	}
	if cert && !b.certOK(r) {
		reply("FAIL", "CERT_AUTH_REQUIRED")
		return
	}
	form, err := parseForm(r, body)
	if err != nil {
		reply("FAIL", "INPUT_VALIDATION_ERROR")
		return
	}
	uOK := b.username.EqualBytes([]byte(form.Get("username")))
	pOK := b.password.EqualBytes([]byte(form.Get("password")))
	if !uOK || !pOK {
		reply("FAIL", "INVALID_USERNAME_OR_PASSWORD")
		return
	}
	reply("SUCCESS", "")
}

// certOK reports whether the TLS peer presented the registered client certificate.
func (b *betfair) certOK(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(b.cert) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(r.TLS.PeerCertificates[0].Raw, b.cert) == 1
}

func (b *betfair) keepAliveOrLogout(w http.ResponseWriter, r *http.Request, logout bool) {
	op := "keepAlive"
	if logout {
		op = "logout"
	}
	b.vs.count(op)
	out := map[string]string{"token": r.Header.Get("X-Authentication"), "product": r.Header.Get("X-Application"), "status": "SUCCESS", "error": ""}
	if r.Method != http.MethodPost || !b.appKeyOK(r) || !b.sessionOK(r) {
		b.vs.authFailure()
		out["status"], out["error"] = "FAIL", "NO_SESSION"
		writeJSON(w, http.StatusOK, out)
		return
	}
	tok := r.Header.Get("X-Authentication")
	b.mu.Lock()
	if logout {
		delete(b.sessions, tok)
	} else {
		b.sessions[tok] = betfairSession{expires: b.vs.clock().Add(b.ttl)}
	}
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   any             `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

func rpcAPINGError(id json.RawMessage, e apingError) rpcResponse {
	return rpcResponse{JSONRPC: "2.0", ID: id, Error: map[string]any{
		"code": -32099, "message": e.fault,
		"data": map[string]any{"APINGException": map[string]string{"errorCode": e.code}, "exceptionname": "APINGException"},
	}}
}

func (b *betfair) jsonRPC(w http.ResponseWriter, r *http.Request, body []byte) {
	calls, batch, err := ParseJSONRPC(body)
	if err != nil {
		b.vs.count("jsonrpc.invalid")
		writeJSON(w, http.StatusOK, rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"),
			Error: map[string]any{"code": -32700, "message": "Parse error"}})
		return
	}
	authErr, authOK := b.check(r)
	out := make([]rpcResponse, 0, len(calls))
	for _, c := range calls {
		id := c.ID
		if len(id) == 0 {
			id = json.RawMessage("null")
		}
		_, op, _ := strings.Cut(c.Method, "/v1.0/")
		if op == "" {
			op = c.Method
		}
		b.vs.count(op)
		if !authOK {
			b.vs.authFailure()
			out = append(out, rpcAPINGError(id, authErr))
			continue
		}
		if !strings.HasPrefix(c.Method, "SportsAPING/v1.0/") && !strings.HasPrefix(c.Method, "AccountAPING/v1.0/") {
			out = append(out, rpcResponse{JSONRPC: "2.0", ID: id, Error: map[string]any{"code": -32601, "message": "Method not found"}})
			continue
		}
		res, e := b.call(op, c.Params)
		if e != nil {
			out = append(out, rpcAPINGError(id, *e))
			continue
		}
		out = append(out, rpcResponse{JSONRPC: "2.0", ID: id, Result: res})
	}
	if batch {
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, out[0])
}

type betfairInstruction struct {
	SelectionID      json.Number `json:"selectionId"`
	Handicap         json.Number `json:"handicap,omitempty"`
	Side             string      `json:"side"`
	OrderType        string      `json:"orderType"`
	CustomerOrderRef string      `json:"customerOrderRef,omitempty"`
	LimitOrder       *struct {
		Size            json.Number `json:"size"`
		Price           json.Number `json:"price"`
		PersistenceType string      `json:"persistenceType"`
	} `json:"limitOrder,omitempty"`
	BetID string `json:"betId,omitempty"`
}

// call runs one API-NG operation with its JSON params.
func (b *betfair) call(op string, params json.RawMessage) (any, *apingError) {
	var p struct {
		MarketID     string               `json:"marketId"`
		Instructions []betfairInstruction `json:"instructions"`
		CustomerRef  string               `json:"customerRef"`
	}
	if len(bytes.TrimSpace(params)) > 0 {
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, &errInvalidInput
		}
	}
	now := b.vs.clock().UTC()
	const market = "1.234567890"
	runners := []any{
		map[string]any{"selectionId": 47972, "runnerName": "Home", "handicap": 0, "sortPriority": 1},
		map[string]any{"selectionId": 47973, "runnerName": "Away", "handicap": 0, "sortPriority": 2},
	}
	switch op {
	case "listEventTypes":
		return []any{
			map[string]any{"eventType": map[string]string{"id": "1", "name": "Soccer"}, "marketCount": 1},
			map[string]any{"eventType": map[string]string{"id": "7", "name": "Horse Racing"}, "marketCount": 0},
		}, nil
	case "listMarketCatalogue":
		return []any{map[string]any{"marketId": market, "marketName": "Match Odds", "totalMatched": 12345.67, "runners": runners}}, nil
	case "listMarketBook":
		ladder := func(back, lay float64) map[string]any {
			return map[string]any{
				"availableToBack": []any{map[string]float64{"price": back, "size": 250}},
				"availableToLay":  []any{map[string]float64{"price": lay, "size": 180}},
			}
		}
		return []any{map[string]any{"marketId": market, "status": "OPEN", "inplay": false, "runners": []any{
			map[string]any{"selectionId": 47972, "handicap": 0, "status": "ACTIVE", "ex": ladder(2.1, 2.12)},
			map[string]any{"selectionId": 47973, "handicap": 0, "status": "ACTIVE", "ex": ladder(3.4, 3.45)},
		}}}, nil
	case "placeOrders":
		if p.MarketID == "" || len(p.Instructions) == 0 {
			return nil, &errInvalidInput
		}
		reports := make([]any, 0, len(p.Instructions))
		for _, in := range p.Instructions {
			price, size := "", ""
			if in.LimitOrder != nil {
				price, size = in.LimitOrder.Price.String(), in.LimitOrder.Size.String()
			}
			ref := in.CustomerOrderRef
			if ref == "" {
				ref = p.CustomerRef
			}
			o := b.vs.addOrder("3", Order{ClientOrderID: ref, Instrument: p.MarketID + "/" + in.SelectionID.String(), Side: in.Side, Price: price, Size: size})
			reports = append(reports, map[string]any{
				"status": "SUCCESS", "instruction": in, "betId": o.ID, "placedDate": o.Placed,
				"averagePriceMatched": 0, "sizeMatched": 0, "orderStatus": "EXECUTABLE",
			})
		}
		return map[string]any{"customerRef": p.CustomerRef, "status": "SUCCESS", "marketId": p.MarketID, "instructionReports": reports}, nil
	case "cancelOrders":
		var ids []string
		if len(p.Instructions) == 0 {
			for _, o := range b.vs.openOrders() {
				if p.MarketID == "" || strings.HasPrefix(o.Instrument, p.MarketID+"/") {
					ids = append(ids, o.ID)
				}
			}
		}
		for _, in := range p.Instructions {
			ids = append(ids, in.BetID)
		}
		status := "SUCCESS"
		reports := make([]any, 0, len(ids))
		for _, id := range ids {
			o, ok := b.vs.cancelOrder(id)
			rep := map[string]any{"status": "SUCCESS", "instruction": map[string]string{"betId": id}, "sizeCancelled": o.Size, "cancelledDate": now}
			if !ok {
				status = "FAILURE"
				rep = map[string]any{"status": "FAILURE", "errorCode": "BET_TAKEN_OR_LAPSED", "instruction": map[string]string{"betId": id}}
			}
			reports = append(reports, rep)
		}
		res := map[string]any{"customerRef": p.CustomerRef, "status": status, "marketId": p.MarketID, "instructionReports": reports}
		if status != "SUCCESS" {
			res["errorCode"] = "PROCESSED_WITH_ERRORS"
		}
		return res, nil
	case "listCurrentOrders":
		// The unmatched bets, paged with fromRecord and recordCount
		// (at most 1000; moreAvailable says whether more follow).
		var pg struct {
			FromRecord  int `json:"fromRecord"`
			RecordCount int `json:"recordCount"`
		}
		if len(bytes.TrimSpace(params)) > 0 {
			if err := json.Unmarshal(params, &pg); err != nil || pg.FromRecord < 0 || pg.RecordCount < 0 {
				return nil, &errInvalidInput
			}
		}
		if pg.RecordCount == 0 || pg.RecordCount > 1000 {
			pg.RecordCount = 1000
		}
		open := b.vs.openOrders()
		more := pg.FromRecord+pg.RecordCount < len(open)
		open = open[min(pg.FromRecord, len(open)):min(pg.FromRecord+pg.RecordCount, len(open))]
		cur := []any{}
		for _, o := range open {
			m, sel, _ := strings.Cut(o.Instrument, "/")
			cur = append(cur, map[string]any{
				"betId": o.ID, "marketId": m, "selectionId": json.Number(numOr0(sel)), "handicap": 0,
				"priceSize": map[string]json.Number{"price": json.Number(numOr0(o.Price)), "size": json.Number(numOr0(o.Size))},
				"side":      o.Side, "status": "EXECUTABLE", "persistenceType": "LAPSE", "orderType": "LIMIT",
				"placedDate": o.Placed, "customerOrderRef": o.ClientOrderID,
			})
		}
		return map[string]any{"currentOrders": cur, "moreAvailable": more}, nil
	case "getAccountFunds":
		return map[string]any{"availableToBetBalance": 1000.0, "exposure": 0.0, "retainedCommission": 0.0,
			"exposureLimit": -10000.0, "discountRate": 0.0, "pointsBalance": 0, "wallet": "UK"}, nil
	}
	return nil, &apingError{"INVALID_INPUT_DATA", "ANGX-0002"}
}

func numOr0(s string) string {
	if s == "" {
		return "0"
	}
	if _, err := json.Number(s).Float64(); err != nil {
		return "0"
	}
	return s
}

var _ emulator = (*betfair)(nil)
