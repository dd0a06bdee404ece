package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/token"
)

// openKillSwitch builds the kill switch on the database (trips re-read
// every killswitch.refresh), its loss guard, and wires its audit records
// to the audit log. The audit log must be open.
func (s *Server) openKillSwitch(ctx context.Context, cfg *config.Config) error {
	set, err := killswitch.Compile(cfg)
	if err != nil {
		return err
	}
	o := killswitch.Options{
		Store: s.db.Trips(), Audit: s.audit, Logger: s.log, Refresh: set.Refresh, DrainTimeout: set.DrainTimeout,
		CancelTries: set.CancelTries, CancelTimeout: set.CancelTimeout, BotScope: set.BotScope,
		Endpoints: s.killEndpoints,
	}
	if s.redactor != nil {
		o.Scrub = s.redactor.Scrub
	}
	s.kill, err = killswitch.New(ctx, o)
	if err != nil {
		return err
	}
	if len(set.LossRules) == 0 {
		return nil
	}
	s.loss, err = killswitch.NewLossGuard(killswitch.LossGuardOptions{
		Switch: s.kill, Ledger: s.db.LossLedger(), Store: s.db.Trips(), Rules: set.LossRules, Logger: s.log,
		Account: func(v string) string {
			if vc, ok := s.Config().Venues[v]; ok {
				return vc.Credential
			}
			return v
		},
		Venues: func(account string) []string {
			var out []string
			for _, id := range sortedVenueIDs(s.Config()) {
				if s.Config().Venues[id].Credential == account {
					out = append(out, id)
				}
			}
			return out
		},
		Policy: func(id token.ID) string {
			if t, err := s.tokens.Get(context.Background(), id); err == nil {
				return t.Policy
			}
			return ""
		},
	})
	return err
}

// gated puts the kill switch's gate in front of a built venue's upstream
// transports: a request to a covered venue is refused right before it
// leaves, and an engagement waits for the ones in flight.
func (s *Server) gated(id string, b builtVenue) builtVenue {
	if s.kill == nil {
		return b
	}
	for _, ep := range []**gateway.Endpoint{&b.gv.Live, &b.gv.Test} {
		if *ep != nil {
			*ep = &gateway.Endpoint{BaseURL: (*ep).BaseURL, Transport: s.kill.Transport(id, (*ep).Transport)}
		}
	}
	return b
}

// killEndpoints are the gateway's venue endpoints as the kill switch
// cancels orders on them.
func (s *Server) killEndpoints() []killswitch.Endpoint {
	if s.gateway == nil {
		return nil
	}
	var out []killswitch.Endpoint
	for _, d := range s.gateway.Direct() {
		out = append(out, killswitch.Endpoint{Venue: d.Venue, Test: d.Test, Impl: d.Impl, Send: d.Send})
	}
	return out
}

// KillSwitch returns the server's kill switch (tests, the demo).
func (s *Server) KillSwitch() *killswitch.Switch { return s.kill }

// auditedTokens records every token lever an admin pulls (create, rotate,
// revoke, freeze, unfreeze) as an audit action record naming the admin.
type auditedTokens struct {
	admin.Tokens
	log AuditLog
}

func (a auditedTokens) record(ctx context.Context, op string, id token.ID, detail string) {
	ev := audit.Event{Time: time.Now(), RequestID: killswitch.NewRequestID(), TokenID: string(id), Operation: op,
		Decision: audit.Allow, Rule: "admin." + op, Actor: admin.Actor(ctx), Detail: detail}
	_ = a.log.Action(context.WithoutCancel(ctx), ev)
}

// Create implements admin.Tokens.
func (a auditedTokens) Create(ctx context.Context, req token.CreateRequest) (secret.Value, *token.Token, error) {
	raw, t, err := a.Tokens.Create(ctx, req)
	if err == nil {
		a.record(ctx, "token.create", t.ID, fmt.Sprintf(`{"name":%q,"policy":%q,"test":%t}`, t.Name, t.Policy, t.Test))
	}
	return raw, t, err
}

// Rotate implements admin.Tokens.
func (a auditedTokens) Rotate(ctx context.Context, id token.ID, grace time.Duration) (secret.Value, *token.Token, error) {
	raw, t, err := a.Tokens.Rotate(ctx, id, grace)
	if err == nil {
		a.record(ctx, "token.rotate", id, fmt.Sprintf(`{"grace_ns":%d}`, grace))
	}
	return raw, t, err
}

// Revoke implements admin.Tokens.
func (a auditedTokens) Revoke(ctx context.Context, id token.ID) error {
	err := a.Tokens.Revoke(ctx, id)
	if err == nil {
		a.record(ctx, "token.revoke", id, "")
	}
	return err
}

// Freeze implements admin.Tokens.
func (a auditedTokens) Freeze(ctx context.Context, id token.ID) error {
	err := a.Tokens.Freeze(ctx, id)
	if err == nil {
		a.record(ctx, "token.freeze", id, "")
	}
	return err
}

// Unfreeze implements admin.Tokens.
func (a auditedTokens) Unfreeze(ctx context.Context, id token.ID) error {
	err := a.Tokens.Unfreeze(ctx, id)
	if err == nil {
		a.record(ctx, "token.unfreeze", id, "")
	}
	return err
}

var _ admin.Tokens = auditedTokens{}

// PanicOffline engages the kill switch directly in the data dir's
// database, for when no server answers on the admin socket: a server
// started later (or running elsewhere on the same database) applies it at
// once or at its next refresh. It cancels no order (that needs the
// server's venues) and writes no audit record (the audit log belongs to
// the server, which records the trip when it sees it).
func PanicOffline(ctx context.Context, env Env, cfg *config.Config, dataDir, venueID, reason string) (killswitch.Engaged, error) {
	if err := CheckDataDirFor(dataDir, cfg); err != nil {
		return killswitch.Engaged{}, err
	}
	db, err := OpenStores(ctx, env, cfg, dataDir, StoreOptions{})
	if err != nil {
		return killswitch.Engaged{}, fmt.Errorf("app: panic: %w", err)
	}
	defer db.Close()
	ks, err := killswitch.New(ctx, killswitch.Options{Store: db.Trips()})
	if err != nil {
		return killswitch.Engaged{}, err
	}
	e := killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic,
		Actor: killswitch.AdminActor(os.Getuid()) + " (offline)", Reason: reason}
	if venueID != "" {
		e.Scope, e.Target = killswitch.ScopeVenue, venueID
	}
	res, err := ks.Engage(ctx, e)
	if err == nil && !res.Persisted {
		err = fmt.Errorf("app: panic: the database could not be written: the switch is NOT engaged")
	}
	return res, err
}
