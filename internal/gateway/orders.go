package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
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

// order is the state a request opens: the policy's budget hold, the
// idempotency ticket and the client order id, and, once forward knows it,
// the outcome that settle acts on.
type order struct {
	norm    *venue.Order
	req     *venue.Request // the order as the venue will see it
	hold    *policy.Hold
	ticket  *idem.Ticket
	claimed bool // the ticket's claim is stored (else Prepare's, not yet)
	key     idem.Key
	coid    string

	outcome string       // set by forward; "" is outcomeNotSent
	replay  *idem.Replay // the answer to store (rejected, done)
}

// unclaimed is the ticket whose claim the ledger write must store.
func (o *order) unclaimed() *idem.Ticket {
	if o == nil || o.claimed {
		return nil
	}
	return o.ticket
}

// forget ends a ticket whose claim was not stored.
func (o *order) forget() {
	if t := o.unclaimed(); t != nil {
		t.Forget()
		o.ticket = nil
	}
}

// settle ends the hold and the ticket by the outcome: definite rejection
// or nothing sent gives the budget back and forgets the key; success
// keeps both; an unknown outcome keeps the budget and marks the key so it
// is never re-sent blindly. A stored answer is written in the background
// (idem.Ticket.DoneLater): the bot is not kept waiting for that fsync, and
// a repeat of the key in this process gets the answer from memory
// meanwhile.
func (o *order) settle(ctx context.Context, g *Gateway) {
	if o == nil {
		return
	}
	o.forget()
	ctx = context.WithoutCancel(ctx)
	var errs []error
	switch o.outcome {
	case outcomeNotSent, "":
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
		if o.ticket != nil && o.replay != nil {
			errs = append(errs, o.ticket.DoneLater(ctx, *o.replay))
		}
	case outcomeDone:
		if o.hold != nil {
			errs = append(errs, o.hold.Keep(ctx))
		}
		if o.ticket != nil && o.replay != nil {
			errs = append(errs, o.ticket.DoneLater(ctx, *o.replay))
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
	_, _ = w.Write(rep.Body) // #nosec G705 -- the venue's answer, already scrubbed, relayed to the bot as a proxy does
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
	// #nosec G704 -- the URL is the venue's configured base plus the path the venue's lookup built; the transport reaches only the venue's hosts
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
	// errRateUnavailable: a rate limit shared by replicas cannot be
	// checked (Redis down, rate_limit_fallback fail_closed).
	errRateUnavailable = publicError{http.StatusServiceUnavailable, "rate_limit_unavailable", "the shared rate limit cannot be checked; retry later"}
)

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

// wantsIdem reports whether the order gets a client order id and an
// idempotency key.
func (g *Gateway) wantsIdem(s *served, ord *order) bool {
	return g.o.Idem != nil && s.clientIDs != nil && ord.norm != nil
}

// prepareKey gives an order placement its client order id and prepares
// the claim of its idempotency key (idem.Manager.Prepare), which open
// stores with the order's other state. A key already live in this process
// is answered here (its replay, or a lookup of an unknown outcome).
func (g *Gateway) prepareKey(c *call) bool {
	r, s, ord := c.r, c.venue, c.ord
	hkey, hasKey := r.Header.Get(HeaderIdempotencyKey), len(r.Header.Values(HeaderIdempotencyKey)) > 0
	if !g.wantsIdem(s, ord) {
		if hasKey {
			return c.refuse(errIdemUnsupported, audit.Deny, "idem.unsupported")
		}
		return true
	}
	if hasKey && (len(r.Header.Values(HeaderIdempotencyKey)) != 1 || !validIdempotencyKey(hkey)) {
		return c.refuse(errIdemKey, audit.Deny, "idem.key")
	}
	scope := string(c.tok.ID) + "/" + s.id
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
		if err := s.clientIDs.SetClientOrderID(c.vreq, coid); err != nil {
			c.fail(err)
			return c.refuse(errOrderRewrite, audit.Deny, "venue.order")
		}
		c.st.body, c.st.rawQuery = c.vreq.Body, c.vreq.RawQuery
	}
	ord.coid, ord.key = coid, key
	t, rep, err := g.o.Idem.Prepare(c.ctx, key, fingerprint(ord.norm), coid)
	if t != nil {
		ord.ticket = t
		return true
	}
	return g.keyTaken(c, rep, err)
}

// keyTaken acts on an idempotency key that is not free: a replay of its
// first answer, a refusal, or an earlier outcome that is unknown, looked
// up at the venue rather than sent again. It returns true only when the
// venue said definitely that it never got the order and the key was
// reopened for sending it (the order's ticket is then set and stored).
func (g *Gateway) keyTaken(c *call, rep *idem.Replay, err error) bool {
	ctx, s, ord := c.ctx, c.venue, c.ord
	var ue *idem.UnknownError
	switch {
	case err == nil && rep != nil:
		return c.answered(writeReplay(c.w, rep, "replay"), audit.Allow, "idem.replay")
	case errors.Is(err, idem.ErrKeyReused):
		return c.refuse(errIdemReused, audit.Deny, "idem.key_reused")
	case errors.Is(err, idem.ErrBadKey):
		return c.refuse(errIdemKey, audit.Deny, "idem.key")
	case errors.As(err, &ue):
		// An earlier attempt's outcome is unknown: look it up rather
		// than send again.
		if ue.ClientOrderID != "" {
			ord.coid = ue.ClientOrderID
		}
		c.w.Header().Set(HeaderClientOrderID, ord.coid)
		code, body, found, lerr := g.lookup(ctx, s, c.test, ord)
		switch {
		case lerr == nil && found:
			rep := idem.Replay{Status: code, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, ClientOrderID: ord.coid}
			rep.VenueOrderID, _, _ = s.lookup.Found(ord.coid, code, body)
			if err := g.o.Idem.Resolve(ctx, ord.key, rep); err != nil {
				g.log.Error("gateway: resolving an unknown order", "err", err)
			}
			return c.answered(writeReplay(c.w, &rep, "recovered"), audit.Allow, "idem.recovered")
		case lerr == nil:
			// The venue says definitely that it never got the order:
			// sending it now (same client order id) is no blind resend.
			t, rep, err := g.o.Idem.Reopen(ctx, ord.key, fingerprint(ord.norm))
			switch {
			case err == nil && rep != nil:
				return c.answered(writeReplay(c.w, rep, "replay"), audit.Allow, "idem.replay")
			case err == nil:
				ord.ticket, ord.claimed = t, true
				if cid := t.ClientOrderID(); cid != "" && cid != ord.coid {
					ord.coid = cid
				}
				if ord.coid != ord.norm.ClientOrderID {
					if err := s.clientIDs.SetClientOrderID(c.vreq, ord.coid); err != nil {
						c.fail(err)
						return c.refuse(errOrderRewrite, audit.Deny, "venue.order")
					}
					c.st.body, c.st.rawQuery = c.vreq.Body, c.vreq.RawQuery
				}
				c.ev.ClientOrderID = ord.coid
				return true
			case errors.Is(err, idem.ErrPending):
				return c.refuse(errUnknownOutcome, audit.Deny, "idem.outcome_unknown")
			default:
				c.fail(err)
				return c.refuse(errIdemUnavailable, audit.Deny, "idem.unavailable")
			}
		}
		if !errors.Is(lerr, errNoLookup) {
			c.fail(lerr)
		}
		return c.refuse(errUnknownOutcome, audit.Deny, "idem.outcome_unknown")
	case ctx.Err() != nil || errors.Is(err, idem.ErrPending):
		return c.refuse(errIdemBusy, audit.Deny, "idem.in_progress")
	default:
		c.fail(err)
		return c.refuse(errIdemUnavailable, audit.Deny, "idem.unavailable")
	}
}

// recoverUnknown answers an order placement whose outcome is unknown: it
// looks the order up by client order id where the venue allows; found
// answers with the venue's record of it, otherwise 504 with the client
// order id so the bot can check. The order is never sent again.
func (g *Gateway) recoverUnknown(c *call, w *statusWriter) (rule string) {
	ord := c.ord
	code, body, found, err := g.lookup(c.ctx, c.venue, c.test, ord)
	if err == nil && found {
		rep := idem.Replay{Status: code, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, ClientOrderID: ord.coid}
		rep.VenueOrderID, _, _ = c.venue.lookup.Found(ord.coid, code, body)
		c.ev.VenueOrderID = rep.VenueOrderID
		ord.outcome, ord.replay = outcomeDone, &rep
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(HeaderOutcome, "recovered")
		h.Set(HeaderClientOrderID, ord.coid)
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return "idem.recovered"
	}
	ord.outcome = outcomeUnknown
	w.Header().Set(HeaderClientOrderID, ord.coid)
	writeError(w, errUnknownOutcome, "", c.st.id)
	return "upstream.outcome_unknown"
}
