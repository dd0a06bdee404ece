package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// Headers of the order path.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplay         = "Keystile-Idempotent-Replay"
	HeaderClientOrderID  = "Keystile-Client-Order-Id"
	HeaderOutcome        = "Keystile-Outcome"
)

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// Intents makes intent records durable. *audit.Log satisfies it. Intent
// returns only once the record is durable; an error means the write must
// not be forwarded.
type Intents interface {
	Intent(ctx context.Context, e audit.Event) error
}

// order is the request-scoped state of a write: the policy's hold, the
// idempotency ticket and the client order id.
type order struct {
	norm   *venue.Order
	req    *venue.Request // the order as the venue will see it
	hold   *policy.Hold
	ticket *idem.Ticket
	key    idem.Key
	coid   string
}

// settle ends the hold and the ticket once the outcome is known:
// definite rejection or nothing sent gives the budget back and forgets
// the key; success keeps both; an unknown outcome keeps the budget and
// marks the key so it is never re-sent blindly. A stored answer is
// written in the background (idem.Ticket.DoneLater): the bot is not kept
// waiting for that fsync, and a repeat of the key in this process gets
// the answer from memory meanwhile.
func (o *order) settle(ctx context.Context, g *Gateway, outcome string, rep *idem.Replay) {
	if o == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var errs []error
	switch outcome {
	case outcomeNotSent:
		if o.hold != nil {
			errs = append(errs, o.hold.Release(ctx))
		}
		if o.ticket != nil {
			errs = append(errs, o.ticket.Abort(ctx))
		}
	case outcomeRejected:
		if o.hold != nil {
			errs = append(errs, o.hold.Release(ctx))
		}
		if o.ticket != nil && rep != nil {
			errs = append(errs, o.ticket.DoneLater(ctx, *rep))
		}
	case outcomeDone:
		if o.hold != nil {
			errs = append(errs, o.hold.Keep(ctx))
		}
		if o.ticket != nil && rep != nil {
			errs = append(errs, o.ticket.DoneLater(ctx, *rep))
		}
	case outcomeUnknown:
		if o.hold != nil {
			errs = append(errs, o.hold.Keep(ctx))
		}
		if o.ticket != nil {
			errs = append(errs, o.ticket.Unknown(ctx))
		}
	}
	if err := errors.Join(errs...); err != nil {
		g.log.Error("gateway: settling order state", "err", err)
	}
}

const (
	outcomeNotSent  = "not_sent"
	outcomeRejected = "rejected"
	outcomeDone     = "done"
	outcomeUnknown  = "unknown"
)

// validIdempotencyKey accepts 1..255 visible ASCII characters.
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies an order by its normalized content (not its raw
// bytes: SDKs re-sign retries with fresh timestamps).
func fingerprint(o *venue.Order) []byte {
	h := sha256.New()
	for _, f := range []string{o.Instrument, o.Side, o.Type, o.Quantity, o.Price, o.Notional} {
		_, _ = io.WriteString(h, strconv.Itoa(len(f)))
		_, _ = io.WriteString(h, ":")
		_, _ = io.WriteString(h, f)
	}
	return h.Sum(nil)
}

// writeReplay answers with a stored outcome.
func writeReplay(w http.ResponseWriter, rep *idem.Replay, outcome string) int {
	h := w.Header()
	for k, vs := range rep.Header {
		if strings.HasPrefix(k, "Keystile-") {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	h.Set(HeaderReplay, "true")
	if outcome != "" {
		h.Set(HeaderOutcome, outcome)
	}
	if rep.ClientOrderID != "" {
		h.Set(HeaderClientOrderID, rep.ClientOrderID)
	}
	h.Set("Content-Length", strconv.Itoa(len(rep.Body)))
	status := rep.Status
	if status < 200 || status > 599 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(rep.Body)
	return status
}

// policyInput builds the policy engine's input.
func policyInput(now time.Time, tok *token.Token, s *served, op string, r *http.Request, vpath string, o *venue.Order, oerr error) *policy.Input {
	in := &policy.Input{
		Time: now, TokenID: string(tok.ID), Policy: tok.Policy, Venue: s.id, Account: s.account,
		Operation: op, Method: r.Method, Path: vpath, RawQuery: r.URL.RawQuery, Order: o, OrderErr: oerr,
	}
	if s.prices != nil {
		in.Prices = s.prices
	}
	return in
}

// lookup asks the venue for the order by client order id after an
// unknown outcome, with the venue's lookup requests signed like any other:
// found gives the answer that holds the order; found=false with a nil
// error is a definite "no such order".
func (g *Gateway) lookup(ctx context.Context, s *served, test bool, o *order) (status int, body []byte, found bool, err error) {
	if s.lookup == nil || o == nil || o.norm == nil || o.req == nil || o.coid == "" {
		return 0, nil, false, errNoLookup
	}
	reqs, err := s.lookup.LookupRequests(o.req, o.norm, o.coid)
	if err != nil {
		return 0, nil, false, err
	}
	base, rt := s.liveBase, s.liveRT
	if test {
		base, rt = s.testBase, s.testRT
	}
	if rt == nil || base == nil || len(reqs) == 0 {
		return 0, nil, false, errNoLookup
	}
	results := make([]venue.LookupResult, 0, len(reqs))
	for _, vr := range reqs {
		code, data, err := g.send(ctx, base, rt, vr)
		if err != nil {
			results = append(results, venue.LookupResult{Err: err})
			continue
		}
		id, ok, ferr := s.lookup.Found(o.coid, code, data)
		results = append(results, venue.LookupResult{VenueOrderID: id, Found: ok, Err: ferr})
		if ferr == nil && ok {
			return code, data, true, nil
		}
	}
	_, found, err = venue.LookupOutcome(results)
	return 0, nil, found, err
}

// send sends one request keystile makes itself (a lookup) through an
// endpoint's signing transport and returns the scrubbed answer.
func (g *Gateway) send(ctx context.Context, base *url.URL, rt http.RoundTripper, vr *venue.Request) (int, []byte, error) {
	u := *base
	escaped := strings.TrimSuffix(base.EscapedPath(), "/") + vr.Path
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return 0, nil, err
	}
	u.Path, u.RawPath, u.RawQuery = p, "", vr.RawQuery
	if u.EscapedPath() != escaped {
		u.RawPath = escaped
	}
	st := &reqState{id: newRequestID(), path: vr.Path, rawQuery: vr.RawQuery, body: vr.Body}
	lctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), stateKey{}, st), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(venue.WithAttempt(venue.WithTestEndpoint(lctx, venue.TestEndpoint(ctx))), vr.Method, u.String(), bytes.NewReader(vr.Body))
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range vr.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if len(vr.Body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := readAnswer(resp, g.o.MaxResponseBytes)
	if err != nil {
		return 0, nil, err
	}
	st.mu.Lock()
	sent := st.sent
	st.mu.Unlock()
	scrub := g.scrubberFor(sent)
	return resp.StatusCode, scrub.body(data, resp.Header.Get("Content-Type")), nil
}

var errNoLookup = errors.New("gateway: the venue cannot look orders up")

// Public errors of the order path.
var (
	errAuditUnavailable = publicError{http.StatusServiceUnavailable, "audit_unavailable", "the audit log cannot be written; writes are refused"}
	errIdemKey          = publicError{http.StatusBadRequest, "bad_request", "invalid Idempotency-Key header"}
	errIdemUnsupported  = publicError{http.StatusBadRequest, "bad_request", "idempotency keys are not supported for this request"}
	errIdemReused       = publicError{http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used for a different order"}
	errIdemBusy         = publicError{http.StatusConflict, "in_progress", "an order with this key is still in progress; retry later"}
	errIdemUnavailable  = publicError{http.StatusServiceUnavailable, "idempotency_unavailable", "order de-duplication is unavailable; the order was not sent"}
	errOrderRewrite     = publicError{http.StatusBadRequest, "bad_request", "malformed order"}
	errPolicyRate       = publicError{http.StatusTooManyRequests, "rate_limited", "request rate limit reached; retry later"}
)

// policyDeny answers a policy refusal: 429 with Retry-After for rates,
// 403 with the rule id otherwise.
func (g *Gateway) policyDeny(w http.ResponseWriter, st *reqState, d *policy.Decision, deny func(publicError, string, string)) {
	st.mu.Lock()
	if d.Reason != "" {
		st.err = errors.New(d.Reason)
	}
	st.mu.Unlock()
	if d.Status == http.StatusTooManyRequests {
		if d.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (d.RetryAfter+time.Second-1)/time.Second))))
		}
		deny(errPolicyRate, audit.Deny, d.Rule)
		return
	}
	deny(errDenied, audit.Deny, d.Rule)
}

func isUnknown(err error) bool {
	var uo *upstream.UnknownOutcomeError
	return errors.As(err, &uo) && !safeMethod(uo.Method)
}

// replayHeader keeps the answer headers worth replaying.
func replayHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{"Content-Type"} {
		if v := h.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// setOrder copies the normalized order into the audit event.
func setOrder(e *audit.Event, o *venue.Order) {
	e.Instrument, e.Side, e.OrderType, e.Quantity = o.Instrument, o.Side, o.Type, o.Quantity
	e.Price, e.Notional, e.ClientOrderID = o.Price, o.Notional, o.ClientOrderID
}

// evaluateAsync evaluates the policy on its own goroutine and sends the
// decision. A panic there would end the process (net/http recovers only
// the handler's own goroutine): it becomes a denial instead.
func (g *Gateway) evaluateAsync(ctx context.Context, in *policy.Input, out chan<- *policy.Decision) {
	defer func() {
		if p := recover(); p != nil {
			g.log.Error("gateway: policy evaluation panicked", "panic", fmt.Sprint(p))
			out <- &policy.Decision{Rule: "policy.error", Status: http.StatusForbidden, Reason: "policy evaluation failed"}
		}
	}()
	out <- g.o.Policy.Evaluate(ctx, in)
}

// idemClaim is the result of beginIdem.
type idemClaim struct {
	pe     *publicError // refused before any claim (with rule)
	rule   string
	active bool // a key was claimed or looked at: ticket, rep, err hold Begin's result
	ticket *idem.Ticket
	rep    *idem.Replay
	err    error
}

// wantsIdem reports whether beginIdem will claim a key for this order.
func (g *Gateway) wantsIdem(s *served, ord *order) bool {
	return g.o.Idem != nil && s.clientIDs != nil && ord.norm != nil
}

// beginIdem gives an order placement its client order id and claims its
// idempotency key (idem.Manager.Begin). It writes no answer: idempotency
// acts on the result once the policy has allowed the order.
func (g *Gateway) beginIdem(ctx context.Context, r *http.Request, st *reqState, s *served,
	tok *token.Token, ord *order, vreq *venue.Request) idemClaim {
	hkey, hasKey := r.Header.Get(HeaderIdempotencyKey), len(r.Header.Values(HeaderIdempotencyKey)) > 0
	if !g.wantsIdem(s, ord) {
		if hasKey {
			return idemClaim{pe: &errIdemUnsupported, rule: "idem.unsupported"}
		}
		return idemClaim{}
	}
	if hasKey && (len(r.Header.Values(HeaderIdempotencyKey)) != 1 || !validIdempotencyKey(hkey)) {
		return idemClaim{pe: &errIdemKey, rule: "idem.key"}
	}
	scope := string(tok.ID) + "/" + s.id
	coid := ord.norm.ClientOrderID
	var key idem.Key
	switch {
	case hasKey:
		key = idem.Key{Scope: scope, Value: "key:" + hkey}
		if coid == "" {
			coid = s.clientIDs.NewClientOrderID(g.o.Idem.Seed(key))
		}
	case coid != "":
		key = idem.Key{Scope: scope, Value: "coid:" + coid}
	default:
		var seed [16]byte
		_, _ = rand.Read(seed[:])
		coid = s.clientIDs.NewClientOrderID(seed)
		key = idem.Key{Scope: scope, Value: "coid:" + coid}
	}
	if coid != ord.norm.ClientOrderID {
		if err := s.clientIDs.SetClientOrderID(vreq, coid); err != nil {
			st.err = err
			return idemClaim{pe: &errOrderRewrite, rule: "venue.order"}
		}
		st.body, st.rawQuery = vreq.Body, vreq.RawQuery
	}
	ord.coid, ord.key, ord.req = coid, key, vreq
	c := idemClaim{active: true}
	c.ticket, c.rep, c.err = g.o.Idem.Begin(ctx, key, fingerprint(ord.norm), coid)
	return c
}

// idempotency acts on beginIdem's result once the order is allowed.
// handled=true means the request was answered (replay or recovered
// outcome: status) or must be refused (pe, rule).
func (g *Gateway) idempotency(ctx context.Context, w http.ResponseWriter, st *reqState, s *served,
	ord *order, vreq *venue.Request, c idemClaim) (status int, pe *publicError, rule string, handled bool) {
	if c.pe != nil {
		return 0, c.pe, c.rule, true
	}
	if !c.active {
		return 0, nil, "", false
	}
	key, err := ord.key, c.err
	var ue *idem.UnknownError
	switch {
	case err == nil && c.rep != nil:
		return writeReplay(w, c.rep, "replay"), nil, "idem.replay", true
	case err == nil:
		ord.ticket = c.ticket
		return 0, nil, "", false
	case errors.Is(err, idem.ErrKeyReused):
		return 0, &errIdemReused, "idem.key_reused", true
	case errors.Is(err, idem.ErrBadKey):
		return 0, &errIdemKey, "idem.key", true
	case errors.As(err, &ue):
		// An earlier attempt's outcome is unknown: look it up rather
		// than send again.
		if ue.ClientOrderID != "" {
			ord.coid = ue.ClientOrderID
		}
		w.Header().Set(HeaderClientOrderID, ord.coid)
		code, body, found, lerr := g.lookup(ctx, s, venue.TestEndpoint(ctx), ord)
		switch {
		case lerr == nil && found:
			rep := idem.Replay{Status: code, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, ClientOrderID: ord.coid}
			rep.VenueOrderID, _, _ = s.lookup.Found(ord.coid, code, body)
			if err := g.o.Idem.Resolve(ctx, key, rep); err != nil {
				g.log.Error("gateway: resolving an unknown order", "err", err)
			}
			return writeReplay(w, &rep, "recovered"), nil, "idem.recovered", true
		case lerr == nil:
			// The venue says definitely that it never got the order:
			// sending it now (same client order id) is no blind resend.
			t, rep, err := g.o.Idem.Reopen(ctx, key, fingerprint(ord.norm))
			switch {
			case err == nil && rep != nil:
				return writeReplay(w, rep, "replay"), nil, "idem.replay", true
			case err == nil:
				ord.ticket = t
				if c := t.ClientOrderID(); c != "" && c != ord.coid {
					ord.coid = c
				}
				if ord.coid != ord.norm.ClientOrderID {
					if err := s.clientIDs.SetClientOrderID(vreq, ord.coid); err != nil {
						st.err = err
						return 0, &errOrderRewrite, "venue.order", true
					}
					st.body, st.rawQuery = vreq.Body, vreq.RawQuery
				}
				return 0, nil, "", false
			case errors.Is(err, idem.ErrPending):
				return 0, &errUnknownOutcome, "idem.outcome_unknown", true
			default:
				st.err = err
				return 0, &errIdemUnavailable, "idem.unavailable", true
			}
		}
		if !errors.Is(lerr, errNoLookup) {
			st.err = lerr
		}
		return 0, &errUnknownOutcome, "idem.outcome_unknown", true
	case ctx.Err() != nil || errors.Is(err, idem.ErrPending):
		return 0, &errIdemBusy, "idem.in_progress", true
	default:
		st.err = err
		return 0, &errIdemUnavailable, "idem.unavailable", true
	}
}

// recoverUnknown answers an order placement whose outcome is unknown: it
// looks the order up by client order id where the venue allows; found
// answers with the venue's record of it, otherwise 504 with the client
// order id so the bot can check. The order is never sent again.
func (g *Gateway) recoverUnknown(ctx context.Context, w *statusWriter, s *served, test bool, ord *order, ev *audit.Event) (rule string) {
	code, body, found, err := g.lookup(ctx, s, test, ord)
	if err == nil && found {
		rep := idem.Replay{Status: code, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, ClientOrderID: ord.coid}
		rep.VenueOrderID, _, _ = s.lookup.Found(ord.coid, code, body)
		ev.VenueOrderID = rep.VenueOrderID
		ord.settle(ctx, g, outcomeDone, &rep)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(HeaderOutcome, "recovered")
		h.Set(HeaderClientOrderID, ord.coid)
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return "idem.recovered"
	}
	ord.settle(ctx, g, outcomeUnknown, nil)
	w.Header().Set(HeaderClientOrderID, ord.coid)
	st := stateOf(ctx)
	id := ""
	if st != nil {
		id = st.id
	}
	writeError(w, errUnknownOutcome, "", id)
	return "upstream.outcome_unknown"
}
