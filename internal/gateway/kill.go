package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
)

// PathKill is where a bot trips the kill switch for itself.
const PathKill = "/-/kill"

// maxKillBody bounds a POST /-/kill body ({"scope":...,"reason":...}).
const maxKillBody = 4 << 10

// Killer engages the kill switch for a bot that asks for it with its own
// token. *killswitch.Switch satisfies it. BotKill returns an error wrapping
// killswitch.ErrBadKillRequest for a malformed body.
type Killer interface {
	BotKill(ctx context.Context, requestID string, tok *token.Token, body []byte) (killswitch.BotKillAnswer, error)
}

var (
	errNotFound   = publicError{http.StatusNotFound, "not_found", "not found"}
	errKillFailed = publicError{http.StatusInternalServerError, "kill_failed", "the kill switch could not be engaged; ask an operator to run keystile panic"}
)

// serveKill answers POST /-/kill: the bot authenticates with its token
// (Keystile-Token or Authorization: Bearer; it names no venue), under the
// same failure limit as every request, and the switch engages within what
// its policy allows. A token the switch already covers is answered 200
// with "already": a kill cannot be undone, so repeating it is harmless.
func (g *Gateway) serveKill(w http.ResponseWriter, r *http.Request, id string, start time.Time) {
	src := sourceAddr(r)
	ev := audit.Event{Time: start, RequestID: id, Method: r.Method, Path: PathKill, Source: src.String(), Operation: "killswitch.bot"}
	var detail error
	finish := func(status int, decision, rule string) {
		ev.Status, ev.Decision, ev.Rule, ev.Latency = status, decision, rule, g.now().Sub(start)
		if detail != nil {
			ev.Error = detail.Error()
		}
		g.o.Events.Record(r.Context(), ev)
	}
	deny := func(pe publicError, decision, rule string) {
		writeError(w, pe, rule, id)
		finish(pe.Status, decision, rule)
	}
	answer := func(v any, rule string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(v)
		finish(http.StatusOK, audit.Allow, rule)
	}
	if g.o.Kill == nil {
		deny(errNotFound, audit.Deny, "killswitch.disabled")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		deny(errMethod, audit.Deny, "request.method")
		return
	}
	raw, ok := bearer(r)
	if !ok {
		deny(errNoToken, audit.Deny, "token.missing")
		return
	}
	tok, err := g.o.Tokens.Verify(r.Context(), raw, token.VerifyRequest{AnyVenue: true, Source: src})
	if tok != nil {
		ev.TokenID = string(tok.ID)
	}
	if err != nil {
		var re *token.RefusedError
		if errors.As(err, &re) {
			ev.TokenID = string(re.ID)
		}
		if errors.Is(err, token.ErrKilled) {
			answer(killswitch.BotKillAnswer{Killed: true, Already: true, Trips: []int64{}}, "killswitch.already")
			return
		}
		// The failure limits apply only now (authfail.go).
		detail = err
		pe, rule := g.fails.refusal(w.Header(), src, err, start)
		deny(pe, audit.Deny, rule)
		return
	}
	body, err := readBody(w, r, maxKillBody)
	if err != nil {
		detail = err
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			deny(errTooLarge, audit.Deny, "request.body_size")
		} else {
			deny(errBadRequest, audit.Deny, "request.body")
		}
		return
	}
	// The kill completes even if the bot hangs up.
	ans, err := g.o.Kill.BotKill(context.WithoutCancel(r.Context()), id, tok, body)
	switch {
	case errors.Is(err, killswitch.ErrBadKillRequest):
		detail = err
		deny(errBadRequest, audit.Deny, "killswitch.request")
	case err != nil:
		detail = err
		g.log.Error("gateway: kill switch", "request_id", id, "err", err)
		deny(errKillFailed, audit.Error, "killswitch.error")
	default:
		answer(ans, killswitch.RuleBot)
	}
}

var _ Killer = (*killswitch.Switch)(nil)
