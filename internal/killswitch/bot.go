package killswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/keystile/keystile/internal/token"
)

// BotScope is how far a bot's own POST /-/kill reaches.
type BotScope string

// Bot scopes, narrowest first.
const (
	// BotToken freezes the bot's own token (the default).
	BotToken BotScope = "token"
	// BotVenues freezes every venue the bot's token may reach, for every
	// token.
	BotVenues BotScope = "venues"
	// BotAll engages the whole switch.
	BotAll BotScope = "all"
)

// ParseBotScope reads a bot scope name.
func ParseBotScope(s string) (BotScope, error) {
	switch BotScope(s) {
	case BotToken, BotVenues, BotAll:
		return BotScope(s), nil
	}
	return "", fmt.Errorf("%w: bot scope %q: want token, venues or all", ErrInvalid, s)
}

func (b BotScope) rank() int { return slices.Index([]BotScope{BotToken, BotVenues, BotAll}, b) }

// MaxBotReason bounds the reason a bot gives.
const MaxBotReason = 256

// BotKillRequest is the optional JSON body of POST /-/kill:
// {"scope":"token|venues|all","reason":"..."}; an empty body is
// {"scope":"token"}.
type BotKillRequest struct {
	Scope  BotScope `json:"scope"`
	Reason string   `json:"reason"`
}

// ErrBadKillRequest marks a POST /-/kill body that is not a
// BotKillRequest.
var ErrBadKillRequest = errors.New("killswitch: malformed kill request")

// ParseBotKill reads a POST /-/kill body strictly: one JSON object with
// only scope and reason (both optional), nothing after it.
func ParseBotKill(body []byte) (BotKillRequest, error) {
	req := BotKillRequest{Scope: BotToken}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var raw struct {
		Scope  *string `json:"scope"`
		Reason *string `json:"reason"`
	}
	if err := dec.Decode(&raw); err != nil {
		return BotKillRequest{}, fmt.Errorf("%w: %v", ErrBadKillRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BotKillRequest{}, fmt.Errorf("%w: data after the object", ErrBadKillRequest)
	}
	if raw.Scope != nil {
		sc, err := ParseBotScope(*raw.Scope)
		if err != nil {
			return BotKillRequest{}, fmt.Errorf("%w: %v", ErrBadKillRequest, err)
		}
		req.Scope = sc
	}
	if raw.Reason != nil {
		if err := checkText("reason", *raw.Reason, MaxBotReason, false); err != nil {
			return BotKillRequest{}, fmt.Errorf("%w: %v", ErrBadKillRequest, err)
		}
		req.Reason = strings.TrimSpace(*raw.Reason)
	}
	return req, nil
}

// BotKillAnswer is what POST /-/kill answers the bot.
type BotKillAnswer struct {
	Killed bool     `json:"killed"`
	Scope  BotScope `json:"scope"`
	// Requested is set when the bot asked for a wider scope than its
	// policy allows: the allowed one was engaged instead.
	Requested BotScope `json:"requested,omitempty"`
	Trips     []int64  `json:"trips"`
	// Already is set when the bot was already covered by the switch.
	Already bool `json:"already,omitempty"`
}

// BotKill engages the switch for a bot that asks for it with its own
// token: "agents can turn it on, never off". The scope is the one asked
// for, narrowed to the widest Options.BotScope allows for the token's
// policy (a refusal would leave the bot running). Only an admin clears
// it. requestID correlates the audit record with the gateway's.
func (s *Switch) BotKill(ctx context.Context, requestID string, tok *token.Token, body []byte) (BotKillAnswer, error) {
	req, err := ParseBotKill(body)
	if err != nil {
		return BotKillAnswer{}, err
	}
	allowed := BotToken
	if s.o.BotScope != nil {
		allowed = s.o.BotScope(tok.Policy)
	}
	ans := BotKillAnswer{Killed: true, Scope: req.Scope, Trips: []int64{}}
	if req.Scope.rank() > allowed.rank() {
		ans.Scope, ans.Requested = allowed, req.Scope
	}
	var targets []Engagement
	base := Engagement{Rule: RuleBot, Actor: "bot", Reason: req.Reason, Token: tok.ID, RequestID: requestID,
		Detail: map[string]any{"bot_scope": ans.Scope, "requested": req.Scope}}
	switch ans.Scope {
	case BotAll:
		e := base
		e.Scope = ScopeAll
		targets = append(targets, e)
	case BotVenues:
		for _, v := range tok.Venues {
			e := base
			e.Scope, e.Target = ScopeVenue, v
			targets = append(targets, e)
		}
	default:
		e := base
		e.Scope, e.Target = ScopeToken, string(tok.ID)
		targets = append(targets, e)
	}
	for _, e := range targets {
		res, err := s.Engage(ctx, e)
		if err != nil {
			return BotKillAnswer{}, err
		}
		ans.Trips = append(ans.Trips, res.Trip.ID)
	}
	return ans, nil
}
