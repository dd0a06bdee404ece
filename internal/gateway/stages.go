package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
)

// ServeHTTP implements http.Handler: the reverse-proxy way in, where the
// venue and the venue path come from the URL path
// (/<venue>/<venue path>).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := g.newCall(w, r)
	if g.probe(c) {
		return
	}
	if r.URL.EscapedPath() == PathKill { // a bot trips the kill switch (kill.go)
		g.serveKill(w, r, c.st.id, c.start)
		return
	}
	g.run(c, g.route)
}

// run takes one request through the pipeline. Each stage either passes it
// on (true) or ends it with an answer to the bot (false); whatever
// happened, settle then ends the order state the request opened and
// finish writes its audit event — the one place that does.
//
// A listener other than the reverse proxy (a forward proxy choosing the
// venue by host) passes its own locate stage. Checks that may refuse a
// request once its token and operation are known (a kill switch, a
// throttle, a detector's verdict) belong in authorize.
func (g *Gateway) run(c *call, locate stage) {
	defer g.finish(c)
	defer g.settle(c)
	for _, next := range []stage{
		locate,         // which venue, which venue path; method allowlist
		g.authenticate, // the bot's kst_ token: found, not brute-forced, verified
		g.endpoint,     // the venue exists and serves the token's environment
		g.readBody,     // under max_body_bytes; every later stage uses these exact bytes
		g.classify,     // the venue's operation for method + path; the token's scopes
		g.authorize,    // what the detector holds back (throttle, freezes); the venue's rate limits
		g.decide,       // policy (order fields, limits, budget) and the idempotency key
		g.open,         // the one durable write: intent record + budget reservation + key claim
		g.forward,      // sign, send, scrub the answer; an unknown outcome is looked up
	} {
		if !next(c) {
			return
		}
	}
}

// stage is one step of the pipeline: true lets the request go on; false
// means the stage has answered the bot (call.refuse or call.answered).
type stage func(c *call) bool

// call is one request on its way through the pipeline: what each stage
// learned, passed explicitly to the next. Only the reverse proxy's
// callbacks (Rewrite, the signer, ModifyResponse, ErrorHandler) reach
// the request through its context, via st.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context // r's context with st, the attempt counter and the endpoint flag
	start time.Time
	st    *reqState
	ev    audit.Event // the request's audit event, completed by finish

	venueID, path string // locate: venue id and escaped venue path
	tok           *token.Token
	venue         *served
	test          bool // the token's environment is the venue's test endpoint
	proxy         *httputil.ReverseProxy
	op            string           // classify: the venue's operation
	vreq          *venue.Request   // the request as the venue will see it (order fields may be rewritten)
	verdict       *policy.Decision // decide: the policy's (nil without a policy)
	ord           *order           // order state the request opens (budget hold, idempotency ticket)

	// The end: status answered, audit decision and rule.
	status   int
	decision string
	rule     string
}

// newCall starts a request: its id (Keystile-Request-Id) and audit event.
func (g *Gateway) newCall(w http.ResponseWriter, r *http.Request) *call {
	start := g.now()
	st := &reqState{id: newRequestID()}
	w.Header().Set(HeaderRequestID, st.id)
	if len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent with Transfer-Encoding and
		// keeps the connection open; RFC 9112 6.1 requires closing it
		// after the answer, so nothing smuggled behind it runs.
		w.Header().Set("Connection", "close")
	}
	return &call{w: w, r: r, ctx: r.Context(), start: start, st: st,
		ev: audit.Event{Time: start, RequestID: st.id, Method: r.Method, Source: sourceAddr(r).String()}}
}

// refuse answers the bot with a public error and ends the request.
func (c *call) refuse(pe publicError, decision, rule string) bool {
	writeError(c.w, pe, rule, c.st.id)
	return c.answered(pe.Status, decision, rule)
}

// answered ends a request whose answer has been written.
func (c *call) answered(status int, decision, rule string) bool {
	c.status, c.decision, c.rule = status, decision, rule
	return false
}

// fail records err (internal detail for the audit event and the log).
func (c *call) fail(err error) {
	c.st.mu.Lock()
	c.st.err = err
	c.st.mu.Unlock()
}

// probe answers the health and readiness checks (no audit event).
func (g *Gateway) probe(c *call) bool {
	switch c.r.URL.EscapedPath() {
	case "/-/healthz":
		c.w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(c.w, `{"status":"ok"}`+"\n")
		return true
	case "/-/readyz":
		if g.o.Ready != nil {
			if err := g.o.Ready(); err != nil {
				g.log.Warn("gateway: not ready", "err", err)
				writeError(c.w, publicError{http.StatusServiceUnavailable, "not_ready", "not ready"}, "", c.st.id)
				return true
			}
		}
		var health any
		if g.o.Health != nil {
			health = g.o.Health()
		}
		c.w.Header().Set("Content-Type", "application/json")
		if health == nil {
			_, _ = io.WriteString(c.w, `{"status":"ready"}`+"\n")
			return true
		}
		_ = json.NewEncoder(c.w).Encode(struct {
			Status string `json:"status"`
			Store  any    `json:"store"`
		}{"ready", health})
		return true
	}
	return false
}

// route locates the venue from the URL path and checks the method.
func (g *Gateway) route(c *call) bool {
	venueID, vpath, ok := splitVenue(c.r.URL.EscapedPath())
	c.venueID, c.path = venueID, vpath
	c.ev.Venue, c.ev.Path = venueID, vpath
	if !ok || c.r.URL.Opaque != "" {
		return c.refuse(errBadPath, audit.Deny, "request.path")
	}
	switch c.r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		return c.refuse(errMethod, audit.Deny, "request.method")
	}
	c.venue = (*g.venues.Load())[venueID]
	return true
}

// authenticate finds the bot's token — the forward-proxy tunnel's token,
// else Keystile-Token, the venue's own key place (an unmodified SDK puts
// the kst_ token where the API key goes), then Authorization: Bearer —
// and verifies it in the environment of the endpoint it will reach.
func (g *Gateway) authenticate(c *call) bool {
	r, s := c.r, c.venue
	raw, ok := tunnelToken(r.Context()) // forward proxy: the tunnel's token wins
	if v := r.Header.Get(HeaderToken); !ok && v != "" {
		raw, ok = strings.TrimSpace(v), true
	} else if !ok && s != nil && s.carrier != nil {
		raw, ok = s.carrier.BotToken(r.Header, r.URL.RawQuery)
	}
	if !ok {
		raw, ok = bearer(r)
	}
	if !ok {
		return c.refuse(errNoToken, audit.Deny, "token.missing")
	}
	src := sourceAddr(r)
	parsed, perr := token.Parse(raw)
	isTest := perr == nil && parsed.Test
	// An unknown venue has no endpoint: the token is checked in its own
	// environment, so that a valid token hears 404, not a misleading
	// wrong-environment 403.
	c.test = s == nil && isTest
	if s != nil {
		if isTest && s.test != nil {
			c.proxy, c.test = s.test, true
		} else if !isTest && s.live != nil {
			c.proxy = s.live
		} else if s.test != nil {
			c.test = true
		}
	}
	tok, err := g.o.Tokens.Verify(c.ctx, raw, token.VerifyRequest{Venue: c.venueID, Source: src, TestEndpoint: c.test})
	if tok != nil {
		c.ev.TokenID = string(tok.ID)
	} else {
		var re *token.RefusedError
		if errors.As(err, &re) {
			c.ev.TokenID = string(re.ID)
		}
	}
	if err != nil {
		// Failure limits apply only now: a token that verifies is never
		// refused by them (authfail.go).
		c.fail(err)
		pe, rule := g.fails.refusal(c.w.Header(), src, err, c.start)
		return c.refuse(pe, audit.Deny, rule)
	}
	c.tok = tok
	// A kst_ token in the query never reaches the venue.
	r.URL.RawQuery = stripQueryTokens(r.URL.RawQuery)
	return true
}

// endpoint requires a configured venue with an endpoint for the token's
// environment.
func (g *Gateway) endpoint(c *call) bool {
	if c.venue == nil {
		return c.refuse(errUnknownVenue, audit.Deny, "route.unknown_venue")
	}
	if c.proxy == nil {
		return c.refuse(errTokenForbidden, audit.Deny, "token.environment")
	}
	c.ctx = venue.WithTestEndpoint(venue.WithAttempt(context.WithValue(c.ctx, stateKey{}, c.st)), c.test)
	return true
}

// readBody reads the body under the size limit; everything downstream
// (the classifier, the policy, the signer, retries) uses these exact
// bytes.
func (g *Gateway) readBody(c *call) bool {
	body, err := readBody(c.w, c.r, g.o.MaxBodyBytes)
	if err != nil {
		c.fail(err)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return c.refuse(errTooLarge, audit.Deny, "request.body_size")
		}
		return c.refuse(errBadRequest, audit.Deny, "request.body")
	}
	c.st.path, c.st.rawQuery, c.st.body = c.path, c.r.URL.RawQuery, body
	return true
}

// classify names the operation and checks it against the token's scopes
// before anything is signed.
func (g *Gateway) classify(c *call) bool {
	r := c.r
	op, mapped := c.venue.impl.Classify(&venue.Request{Method: r.Method, Path: c.path, RawQuery: r.URL.RawQuery, Header: r.Header, Body: c.st.body})
	c.op, c.ev.Operation = op, op
	if !mapped {
		return c.refuse(errDenied, audit.Deny, "venue.unmapped_route")
	}
	if !c.tok.Allows(op) {
		return c.refuse(errDenied, audit.Deny, "token.scope")
	}
	c.vreq = &venue.Request{Method: r.Method, Path: c.path, RawQuery: r.URL.RawQuery, Header: r.Header, Body: c.st.body}
	return true
}

// authorize applies the limits that do not depend on the request's
// contents: what the anomaly detector holds back (Options.Guard: a
// throttled token, a frozen venue or credential), then the venue's rate
// limits (exchange weights, usage headers, back-off after a 429). The
// kill switch acts earlier, in the token check itself.
func (g *Gateway) authorize(c *call) bool {
	if g.o.Guard != nil {
		if rule, wait := g.o.Guard.Admit(string(c.tok.ID), c.venueID, c.start); rule != "" {
			pe := errTokenForbidden
			if wait > 0 {
				c.w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (wait+time.Second-1)/time.Second))))
				pe = errThrottled
			}
			return c.refuse(pe, audit.Deny, rule)
		}
	}
	if lim := c.venue.limiter; lim != nil {
		if wait, ok := lim.Allow(c.op, g.now()); !ok {
			c.w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (wait+time.Second-1)/time.Second))))
			return c.refuse(errRateLimited, audit.Deny, "venue.rate_limit")
		}
	}
	return true
}

// decide reads an order placement's fields, has the policy decide
// (limits, CEL, rates; the budget to reserve) and prepares its
// idempotency key. The policy's answer comes first: a denied order
// claims no key.
func (g *Gateway) decide(c *call) bool {
	var oerr error
	if c.op == venue.OpOrderPlace {
		c.ord = &order{req: c.vreq}
		if c.venue.normalizer != nil {
			c.ord.norm, oerr = c.venue.normalizer.Normalize(c.vreq)
			if c.ord.norm != nil {
				setOrder(&c.ev, c.ord.norm)
			}
		}
		if pe, rule, refuse := orderRefusal(oerr, g.o.Policy != nil); refuse {
			c.fail(oerr)
			return c.refuse(pe, audit.Deny, rule)
		}
	}
	if g.o.Policy != nil {
		in := policyInput(c.start, c.tok, c.venue, c.op, c.r, c.path, nil, nil)
		if c.ord != nil {
			in.Order, in.OrderErr = c.ord.norm, oerr
		}
		in.DeferBudget = true
		d := g.o.Policy.Evaluate(c.ctx, in)
		if !d.Allow {
			return g.policyDeny(c, d)
		}
		c.verdict = d
		if d.Notional != "" {
			c.ev.Notional = d.Notional
		}
	}
	if c.ord != nil {
		return g.prepareKey(c)
	}
	return true
}

// open makes the request's state durable before anything is sent: for a
// write its intent record, for an order its budget reservation and its
// idempotency claim — one ledger write (Ledger.Open), group-committed
// with the other requests in flight. With an audit log kept outside the
// ledger (Options.Intents), the intent record is a second write, after
// it. A write is a request whose method is not safe and whose operation
// is not a read (venue.ReadOnly): a POST that reads (Betfair, Kraken)
// changes nothing and waits for no disk.
func (g *Gateway) open(c *call) bool {
	write := !safeMethod(c.r.Method) && !venue.ReadOnly(c.op)
	if c.ord != nil && c.ord.coid != "" {
		c.ev.ClientOrderID = c.ord.coid
	}
	for {
		w := &ledger.Write{}
		if write && g.o.Ledger != nil && g.o.Intents == nil {
			ev := c.ev
			w.Intent = &ev
		}
		if c.verdict != nil && c.verdict.Budget != nil {
			b := c.verdict.Budget
			w.Budget = &ledger.Budget{At: b.At, Amount: b.Amount, Claims: b.Claims}
		}
		if t := c.ord.unclaimed(); t != nil {
			rec, notBefore := t.Claim()
			w.Key = &ledger.Key{Record: rec, NotBefore: notBefore}
		}
		if w.Intent == nil && w.Budget == nil && w.Key == nil {
			break
		}
		if g.o.Ledger == nil {
			// Only a budget can get here (New requires a ledger for
			// idempotency): without a store it cannot be reserved.
			return g.policyDeny(c, c.verdict.Budget.Deny(errNoLedger))
		}
		err := g.o.Ledger.Open(c.ctx, w)
		if err == nil {
			if w.Budget != nil {
				if c.ord == nil {
					c.ord = &order{}
				}
				c.ord.hold = c.verdict.Budget.Hold(w.Budget.IDs)
			}
			if w.Key != nil {
				c.ord.claimed = true
			}
			break
		}
		if errors.Is(err, ledger.ErrKeyTaken) {
			rep, kerr := c.ord.ticket.Taken(w.Key.Stored)
			c.ord.ticket = nil
			if !g.keyTaken(c, rep, kerr) {
				return false
			}
			continue // reopened after a lookup: reserve and record it now
		}
		c.ord.forget()
		c.fail(err)
		var ex *policy.ExceededError
		switch {
		case errors.As(err, &ex):
			return g.policyDeny(c, c.verdict.Budget.Deny(err))
		case w.Intent != nil:
			return c.refuse(errAuditUnavailable, audit.Error, "audit.unavailable")
		case w.Key != nil:
			return c.refuse(errIdemUnavailable, audit.Deny, "idem.unavailable")
		default:
			return g.policyDeny(c, c.verdict.Budget.Deny(err))
		}
	}
	if write && g.o.Intents != nil {
		if err := g.o.Intents.Intent(c.ctx, c.ev); err != nil {
			c.fail(err)
			return c.refuse(errAuditUnavailable, audit.Error, "audit.unavailable")
		}
	}
	return true
}

// forward signs and sends the request through the endpoint's reverse
// proxy, which writes the venue's answer (scrubbed) to the bot. An order
// whose outcome is unknown is looked up at the venue instead of being
// answered with an error.
func (g *Gateway) forward(c *call) bool {
	rw := &statusWriter{ResponseWriter: c.w}
	if c.ord != nil && c.ord.coid != "" {
		rw.Header().Set(HeaderClientOrderID, c.ord.coid)
	}
	c.st.deferUnknown = c.ord != nil && c.ord.ticket != nil
	if c.ord != nil {
		// Until the answer says otherwise the order may have left: a
		// panic on the way settles it as unknown (budget kept, key never
		// re-sent blindly), not as unsent.
		c.ord.outcome = outcomeUnknown
	}
	c.proxy.ServeHTTP(rw, c.r.WithContext(c.ctx))
	c.st.mu.Lock()
	upstreamStatus, perr, answer, unknown := c.st.upstream, c.st.err, c.st.answer, c.st.unknown
	c.st.mu.Unlock()
	decision, rule := audit.Allow, ""
	if perr != nil {
		decision = audit.Error
	}
	if o := c.ord; o != nil {
		switch {
		case unknown:
			rule = g.recoverUnknown(c, rw)
		case perr != nil && (isUnknown(perr) || upstreamStatus != 0):
			o.outcome = outcomeUnknown
		case perr != nil || upstreamStatus == 0:
			o.outcome = outcomeNotSent
		case upstreamStatus >= 400 && upstreamStatus < 500:
			o.outcome, o.replay = outcomeRejected, &idem.Replay{Status: upstreamStatus, Header: replayHeader(rw.hdr), Body: answer, ClientOrderID: o.coid}
		default:
			rep := &idem.Replay{Status: upstreamStatus, Header: replayHeader(rw.hdr), Body: answer, ClientOrderID: o.coid}
			if c.venue.orderIDs != nil && o.norm != nil && upstreamStatus < 300 {
				rep.VenueOrderID = c.venue.orderIDs.VenueOrderID(upstreamStatus, answer)
				c.ev.VenueOrderID = rep.VenueOrderID
			}
			o.outcome, o.replay = outcomeDone, rep
		}
	}
	return c.answered(rw.status(), decision, rule)
}

// settle ends the order state the request opened, once its outcome is
// known (order.settle); a request stopped before forward sent nothing.
func (g *Gateway) settle(c *call) {
	c.ord.settle(c.ctx, g)
}

// finish writes the request's audit event: the one place that does.
func (g *Gateway) finish(c *call) {
	if c.status == 0 {
		return // a probe, or a panic on the way (net/http answers it)
	}
	ev := &c.ev
	ev.Status, ev.Decision, ev.Rule = c.status, c.decision, c.rule
	ev.Latency = g.now().Sub(c.start)
	st := c.st
	st.mu.Lock()
	ev.Upstream, ev.UpstreamLatency = st.upstream, st.upTime
	if st.err != nil {
		// A venue's error may quote a credential; the audit log
		// must not keep it.
		ev.Error = st.err.Error()
		if g.o.Scrubber != nil {
			ev.Error = string(g.o.Scrubber.Scrub([]byte(ev.Error)))
		}
	}
	st.mu.Unlock()
	g.o.Events.Record(c.r.Context(), *ev)
}

// policyDeny answers a policy refusal: 429 with Retry-After for rates,
// 403 with the rule id otherwise.
func (g *Gateway) policyDeny(c *call, d *policy.Decision) bool {
	if d.Reason != "" {
		c.fail(errors.New(d.Reason))
	}
	switch d.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d.RetryAfter > 0 {
			c.w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (d.RetryAfter+time.Second-1)/time.Second))))
		}
		if d.Status == http.StatusServiceUnavailable {
			// Not a refusal by the policy: its shared rate store is
			// down and it fails closed. The bot should retry.
			return c.refuse(errRateUnavailable, audit.Deny, d.Rule)
		}
		return c.refuse(errPolicyRate, audit.Deny, d.Rule)
	}
	return c.refuse(errDenied, audit.Deny, d.Rule)
}

// errNoLedger is the reason a budget cannot be reserved without a ledger.
var errNoLedger = errors.New("gateway: no ledger configured to reserve budgets")
