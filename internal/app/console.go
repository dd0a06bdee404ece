package app

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/console"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
)

// VenueAccount is the account a venue's per-account budgets and rates
// count against, as the gateway counts them: gateway.Venue.Account, or
// the venue id when it has none.
func VenueAccount(v gateway.Venue) string {
	if v.Account != "" {
		return v.Account
	}
	return v.ID
}

// newConsole builds the web console (console.listen) over the running
// server: the admin API in process, the stats sink the gateway feeds, and
// the adapters below. It listens but does not serve yet.
func (s *Server) newConsole(ctx context.Context, cfg *config.Config) (*console.Console, error) {
	c := cfg.Console
	o := console.Options{
		Addr: c.Listen, Admin: s.admin.InProcess(), MFA: s.mfa, Stats: s.stats,
		Policies: consolePolicies{s}, Audit: consoleAudit{s}, KillSwitch: consoleKill{s}, Alerts: s.alerts,
		Events: s.audit, SessionTTL: c.SessionTTL, IdleTimeout: c.IdleTimeout, Logger: s.log,
	}
	for _, t := range cfg.Admin.Tokens {
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("admin.tokens: %s: sha256 must be 64 hex digits", t.Name)
		}
		o.AdminTokens = append(o.AdminTokens, admin.BearerToken{Name: t.Name, Digest: [32]byte(b)})
	}
	allow, err := admin.NewAllowList(c.AllowCIDRs)
	if err != nil {
		return nil, fmt.Errorf("console.allow_cidrs: %w", err)
	}
	o.Allow = allow
	switch {
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("console.tls_cert/tls_key: %w", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case c.TLSLocalCA:
		ca := s.localCA()
		if ca == nil {
			return nil, errors.New("console.tls_local_ca: no local CA")
		}
		names := listenNames(c.TLSNames, c.Listen)
		if _, err := ca.Leaf(ctx, names...); err != nil {
			return nil, fmt.Errorf("console.tls_local_ca: %w", err)
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf(hi.Context(), names...) }}
	}
	con, err := console.New(o)
	if err != nil {
		return nil, err
	}
	if err := con.Listen(); err != nil {
		return nil, err
	}
	return con, nil
}

// ConsoleURL is the web console's base URL ("" if it is off).
func (s *Server) ConsoleURL() string {
	if s.console == nil {
		return ""
	}
	return s.console.URL()
}

// consolePolicies serves the console's policy, explain and budget pages
// from the running configuration, policy engine and venues.
type consolePolicies struct{ s *Server }

func (p consolePolicies) Policies() []console.PolicyInfo {
	cfg := p.s.Config()
	names := make([]string, 0, len(cfg.Policies))
	for n := range cfg.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]console.PolicyInfo, 0, len(names))
	for _, n := range names {
		text, err := yaml.MarshalWithOptions(cfg.Policies[n], yaml.OmitEmpty())
		if err != nil {
			text = []byte("(cannot show: " + err.Error() + ")")
		}
		out = append(out, console.PolicyInfo{Name: n, Text: string(text)})
	}
	return out
}

// venue finds a running venue by id.
func (s *Server) runningVenue(id string) (gateway.Venue, bool) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	b, ok := s.venues[id]
	return b.gv, ok
}

func (p consolePolicies) Explain(ctx context.Context, r console.ExplainRequest) (console.ExplainResult, error) {
	tok, err := p.s.tokens.Get(ctx, token.ID(r.Token))
	if errors.Is(err, token.ErrNotFound) {
		return console.ExplainResult{}, fmt.Errorf("no token %s: %w", r.Token, console.ErrInput)
	}
	if err != nil {
		return console.ExplainResult{}, err
	}
	v, ok := p.s.runningVenue(r.Venue)
	if !ok {
		return console.ExplainResult{}, fmt.Errorf("venue %q is not configured: %w", r.Venue, console.ErrInput)
	}
	in := ExplainInput{Token: tok, Venue: r.Venue, Impl: v.Impl, Account: VenueAccount(v), Method: r.Method, Path: r.Path,
		Query: r.Query, Header: r.Header, Body: r.Body, Engine: p.s.policy}
	if r.RefPrice != "" {
		d, err := decimal.NewFromString(r.RefPrice)
		if err != nil || !d.IsPositive() {
			return console.ExplainResult{}, fmt.Errorf("reference price: a positive decimal: %w", console.ErrInput)
		}
		in.RefPrice = d
	}
	res := Explain(ctx, in)
	out := console.ExplainResult{Decision: res.Decision, Rule: res.Rule, Reason: res.Reason, RetryAfter: res.RetryAfter, Status: res.Status,
		Token: res.Token, Policy: res.Policy, Venue: res.Venue, Operation: res.Operation, Notional: res.Notional}
	if o := res.Order; o != nil {
		for _, kv := range [][2]string{{"instrument", o.Instrument}, {"side", o.Side}, {"type", o.Type}, {"quantity", o.Quantity}, {"price", o.Price}, {"notional", o.Notional}} {
			if kv[1] != "" {
				out.Order = append(out.Order, kv[0]+" "+kv[1])
			}
		}
	}
	return out, nil
}

func (p consolePolicies) Budgets(ctx context.Context) ([]console.BudgetRow, error) {
	list, err := p.s.tokens.List(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []console.BudgetRow
	for _, t := range list {
		switch admin.TokenState(t, now) {
		case "revoked", "expired", "rotated":
			continue
		}
		q := policy.UsageQuery{TokenID: string(t.ID), Policy: t.Policy, At: now}
		for _, id := range t.Venues {
			if v, ok := p.s.runningVenue(id); ok {
				q.Accounts, q.Venues = append(q.Accounts, VenueAccount(v)), append(q.Venues, id)
			}
		}
		uses, err := p.s.policy.BudgetUsage(ctx, q)
		if err != nil {
			return out, err
		}
		for _, u := range uses {
			out = append(out, console.BudgetRow{TokenID: string(t.ID), TokenName: t.Name, BudgetUse: u})
		}
	}
	return out, nil
}

// consoleAudit reads the stored audit log for the console.
type consoleAudit struct{ s *Server }

// Bounds of one audit search.
const (
	auditChunk   = 4096
	auditMaxScan = 500_000
)

var errStopScan = errors.New("stop scan")

func (a consoleAudit) reader(ctx context.Context) (AuditReader, error) {
	return a.s.auditReader(ctx)
}

// Search scans the log backwards in chunks from its end, so that the
// newest matches come first and a search reads no more than it needs.
func (a consoleAudit) Search(ctx context.Context, q console.AuditQuery) (console.AuditPage, error) {
	var page console.AuditPage
	r, err := a.reader(ctx)
	if err != nil {
		return page, err
	}
	defer r.Close()
	h, err := r.Head(ctx)
	if err != nil {
		return page, err
	}
	tokHash := ""
	if q.Token != "" {
		tokHash = a.s.audit.TokenHash(q.Token)
	}
	limit := max(q.Limit, 1)
	end := h.Seq
	for end > 0 && len(page.Records) < limit {
		if page.Scanned >= auditMaxScan {
			page.Partial = true
			break
		}
		from := uint64(1)
		if end > auditChunk {
			from = end - auditChunk + 1
		}
		var chunk []audit.Record
		older := false // the chunk reaches before q.Since
		err := r.Scan(ctx, from, func(rec audit.Record) error {
			if rec.Seq > end {
				return errStopScan
			}
			page.Scanned++
			if !q.Since.IsZero() && rec.Hash != "" && rec.Time.Before(q.Since) {
				older = true
			}
			if q.Matches(rec) && (tokHash == "" || rec.Token == tokHash) {
				rec.Raw = nil
				chunk = append(chunk, rec)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return page, err
		}
		for i := len(chunk) - 1; i >= 0 && len(page.Records) < limit; i-- {
			page.Records = append(page.Records, chunk[i])
		}
		if older {
			break
		}
		end = from - 1
	}
	return page, nil
}

func (a consoleAudit) Record(ctx context.Context, seq uint64) (audit.Record, error) {
	r, err := a.reader(ctx)
	if err != nil {
		return audit.Record{}, err
	}
	defer r.Close()
	var out audit.Record
	found := false
	err = r.Scan(ctx, seq, func(rec audit.Record) error {
		if rec.Seq == seq && rec.Hash != "" {
			out, found = rec, true
		}
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return out, err
	}
	if !found {
		return out, fmt.Errorf("audit record %d: %w", seq, console.ErrNotFound)
	}
	return out, nil
}

func (a consoleAudit) Verify(ctx context.Context) (audit.Report, error) {
	keys, err := AuditKeys(ctx, a.s.vault)
	if err != nil {
		return audit.Report{}, err
	}
	r, err := a.reader(ctx)
	if err != nil {
		return audit.Report{}, err
	}
	defer r.Close()
	return audit.Verify(ctx, r, keys.PublicKey())
}

// consoleKill is the web console's view of the kill switch
// (killswitch.Switch): the console has checked the operator's fresh TOTP
// code and confirmation, and audits the action itself; the switch writes
// its own action records (engage, clear, cancel) as for `keystile panic`.
type consoleKill struct{ s *Server }

// State implements console.KillSwitch.
func (k consoleKill) State(ctx context.Context) (console.KillState, error) {
	trips := k.s.kill.Active()
	st := console.KillState{Tripped: len(trips) > 0, CanCancelOrders: true}
	for i, t := range trips {
		if i == 0 || t.EngagedAt.Before(st.Since) {
			st.Since, st.Reason, st.By = t.EngagedAt, t.Reason, t.Actor
		}
		what := string(t.Scope)
		if t.Target != "" {
			what += " " + t.Target
		}
		st.Notes = append(st.Notes, fmt.Sprintf("%s: %s by %s at %s: %s", what, t.Rule, t.Actor, t.EngagedAt.UTC().Format(time.RFC3339), t.Reason))
	}
	if st.Tripped {
		toks, err := k.s.tokens.List(ctx)
		if err != nil {
			return st, err
		}
		now := time.Now()
		for _, t := range toks {
			if !t.RevokedAt.IsZero() || !t.ExpiresAt.After(now) {
				continue
			}
			for _, v := range t.Venues {
				if k.s.kill.Covers(t.ID, v) {
					st.Frozen++ // a live token the switch refuses (on at least one venue)
					break
				}
			}
		}
	}
	return st, nil
}

// Trip implements console.KillSwitch: every token, as `keystile panic
// [--cancel-orders]`.
func (k consoleKill) Trip(ctx context.Context, reason string, cancelOrders bool, by string) (console.KillState, error) {
	actor := "admin " + by
	e := killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic, Actor: actor, Reason: reason,
		RequestID: killswitch.NewRequestID()}
	ctx = context.WithoutCancel(ctx) // a panic runs to the end even if the browser goes away
	if _, err := k.s.kill.Engage(ctx, e); err != nil {
		return console.KillState{}, err
	}
	var notes []string
	if cancelOrders {
		reps, err := k.s.kill.CancelOrders(ctx, killswitch.Cancellation{Actor: actor, Reason: reason, RequestID: e.RequestID})
		for _, r := range reps {
			switch {
			case !r.Supported:
				notes = append(notes, fmt.Sprintf("%s (%s): NOT CANCELLED: no cancel-all procedure for this venue", r.Venue, r.Endpoint))
			case r.OK():
				notes = append(notes, fmt.Sprintf("%s (%s): %d orders cancelled", r.Venue, r.Endpoint, len(r.Cancelled)))
			default:
				notes = append(notes, fmt.Sprintf("%s (%s): %d cancelled, %d failed %s", r.Venue, r.Endpoint, len(r.Cancelled), len(r.Failed), r.Error))
			}
		}
		if err != nil {
			notes = append(notes, "cancelling orders: "+err.Error())
		}
	}
	st, err := k.State(ctx)
	st.CancelOrders = cancelOrders
	st.Notes = append(notes, st.Notes...)
	return st, err
}

// Clear implements console.KillSwitch: every trip, as `keystile panic
// clear`.
func (k consoleKill) Clear(ctx context.Context, by string) (console.KillState, error) {
	if _, err := k.s.kill.Clear(ctx, killswitch.Clearing{Actor: "admin " + by, Reason: "cleared from the web console",
		RequestID: killswitch.NewRequestID()}); err != nil {
		return console.KillState{}, err
	}
	return k.State(ctx)
}

var (
	_ console.KillSwitch = consoleKill{}
	_ console.Policies   = consolePolicies{}
	_ console.AuditLog   = consoleAudit{}
	_ console.MFA        = (*mfa.Manager)(nil)
)

// consoleSink is the stats sink when the console is on (nil otherwise,
// so that the request path is unchanged without a console).
func (s *Server) consoleSink() audit.Sink {
	if s.stats == nil {
		return nil
	}
	return s.stats
}
