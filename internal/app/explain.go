package app

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
)

// ExplainResult is the dry-run decision for one bot request, as `keystile
// policy explain` prints it and the web console shows it.
type ExplainResult struct {
	Decision   string        `json:"decision"` // allow or deny
	Rule       string        `json:"rule,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Status     int           `json:"status,omitempty"`
	RetryAfter string        `json:"retry_after,omitempty"`
	Token      string        `json:"token"`
	Policy     string        `json:"policy"`
	Venue      string        `json:"venue"`
	Operation  string        `json:"operation,omitempty"`
	Notional   string        `json:"notional,omitempty"`
	Order      *ExplainOrder `json:"order,omitempty"`
}

// ExplainOrder is the order explain read from the request.
type ExplainOrder struct {
	Instrument string `json:"instrument,omitempty"`
	Side       string `json:"side,omitempty"`
	Type       string `json:"type,omitempty"`
	Quantity   string `json:"quantity,omitempty"`
	Price      string `json:"price,omitempty"`
	Notional   string `json:"notional,omitempty"`
}

// ExplainInput is one request to explain: the token's record, the venue it
// goes to (built for classification only: nothing is signed), and the
// request as the gateway would see it below the venue prefix.
type ExplainInput struct {
	Token *token.Token
	// Venue is the venue id, Impl its implementation and Account its
	// credential's name (account budgets).
	Venue   string
	Impl    venue.Venue
	Account string
	Method  string
	Path    string // escaped, below the venue prefix, starting with '/'
	Query   string
	Header  http.Header
	Body    []byte
	// RefPrice, if positive, is the instrument's reference price (price
	// bands, market-order notionals); nothing is fetched.
	RefPrice decimal.Decimal
	// Engine evaluates in dry-run mode: no budget reserved, no rate
	// token taken (budgets are read from its store).
	Engine *policy.Engine
	// Now is the request's time; zero means time.Now.
	Now time.Time
}

// Explain runs the gateway's checks after authentication on in, in order
// (venue, operation, scope, policy), without sending or reserving
// anything.
func Explain(ctx context.Context, in ExplainInput) *ExplainResult {
	res := &ExplainResult{Token: string(in.Token.ID), Policy: in.Token.Policy, Venue: in.Venue}
	if res.Policy == "" {
		res.Policy = policy.DefaultName
	}
	deny := func(rule, reason string) *ExplainResult {
		res.Decision, res.Rule, res.Reason, res.Status = "deny", rule, reason, http.StatusForbidden
		return res
	}
	if !slices.Contains(in.Token.Venues, in.Venue) {
		return deny("token.venue", fmt.Sprintf("the token is not valid for venue %s", in.Venue))
	}
	hdr := in.Header
	if hdr == nil {
		hdr = http.Header{}
	}
	vr := &venue.Request{Method: in.Method, Path: in.Path, RawQuery: in.Query, Header: hdr, Body: in.Body}
	op, ok := in.Impl.Classify(vr)
	if !ok {
		return deny("venue.unmapped_route", fmt.Sprintf("%s %s is not in the venue's operations table", in.Method, in.Path))
	}
	res.Operation = op
	if !in.Token.Allows(op) {
		return deny("token.scope", fmt.Sprintf("the token's scopes do not grant %s", op))
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	pin := &policy.Input{Time: now, TokenID: string(in.Token.ID), Policy: in.Token.Policy, Venue: in.Venue, Account: in.Account,
		Operation: op, Method: in.Method, Path: in.Path, RawQuery: in.Query, DryRun: true}
	if n, ok := in.Impl.(venue.Normalizer); ok && op == venue.OpOrderPlace {
		pin.Order, pin.OrderErr = n.Normalize(vr)
	}
	if o := pin.Order; o != nil {
		res.Order = &ExplainOrder{o.Instrument, o.Side, o.Type, o.Quantity, o.Price, o.Notional}
		if in.RefPrice.IsPositive() {
			pin.Prices = policy.StaticPrices{strings.ToUpper(o.Instrument): in.RefPrice}
		}
	}
	d := in.Engine.Evaluate(ctx, pin)
	res.Notional, res.Rule, res.Reason, res.Status = d.Notional, d.Rule, d.Reason, d.Status
	res.Decision = "deny"
	if d.Allow {
		res.Decision = "allow"
	}
	if d.RetryAfter > 0 {
		res.RetryAfter = d.RetryAfter.String()
	}
	return res
}
