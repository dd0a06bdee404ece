package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// ---- overview

type overviewData struct {
	Live     liveData
	Alerts   []alert.Alert
	Kill     KillState
	KillErr  string
	Status   *admin.Status
	StatErr  string
	AlertWin string
}

type liveData struct {
	Snap        Snapshot
	Rate, Lat   chartView
	PerSecond   string
	P50, P99    string
	AddedP50    string
	WindowSecs  int
	ChartSecs   int
	DroppedNote string
}

// chartSeconds is the span of the overview charts.
const chartSeconds = 300

func (c *Console) live() liveData {
	snap := c.o.Stats.Snapshot(chartSeconds)
	req, deny := make([]float64, len(snap.Series)), make([]float64, len(snap.Series))
	p50, p99 := make([]float64, len(snap.Series)), make([]float64, len(snap.Series))
	for i, p := range snap.Series {
		req[i], deny[i] = float64(p.Req), float64(p.Deny+p.Errs)
		p50[i], p99[i] = float64(p.P50)/float64(time.Millisecond), float64(p.P99)/float64(time.Millisecond)
	}
	from, to := snap.At.Add(-chartSeconds*time.Second), snap.At
	d := liveData{Snap: snap, WindowSecs: KeySeconds, ChartSecs: chartSeconds,
		Rate:      lineChart("requests per second", from, to, formatRate, []string{"s-req", "s-deny"}, []string{"requests", "denied or failed"}, req, deny),
		Lat:       lineChart("latency", from, to, formatMillis, []string{"s-p50", "s-p99"}, []string{"p50", "p99"}, p50, p99),
		PerSecond: strings.TrimSuffix(formatRate(snap.PerSecond), "/s"), P50: formatDuration(snap.P50), P99: formatDuration(snap.P99),
		AddedP50: formatDuration(snap.AddedP50)}
	if snap.Dropped > 0 {
		d.DroppedNote = fmt.Sprintf("%d events were not counted here (the console's queue was full); the audit log has them all", snap.Dropped)
	}
	return d
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	d := overviewData{Live: c.live(), AlertWin: "24 h"}
	if c.o.Alerts != nil {
		d.Alerts = c.o.Alerts.Recent(c.now().Add(-24 * time.Hour))
		if len(d.Alerts) > 10 {
			d.Alerts = d.Alerts[:10]
		}
	}
	var err error
	if d.Kill, err = c.o.KillSwitch.State(r.Context()); err != nil {
		d.KillErr = c.userError(r, "reading the kill switch", err)
	}
	var st admin.Status
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathStatus, nil, &st, ""); err != nil {
		d.StatErr = c.userError(r, "reading the status", err)
	} else {
		d.Status = &st
	}
	c.render(w, r, http.StatusOK, "overview", "Overview", &view{Data: d})
}

// liveOverview is the fragment the overview page polls (it does not
// count as activity for the idle timeout).
func (c *Console) liveOverview(w http.ResponseWriter, r *http.Request) {
	c.fragment(w, r, "overview", "live", c.live())
}

// ---- tokens

type tokenRow struct {
	admin.TokenInfo
	Seen      Seen
	SeenKnown bool
	ReadOnly  bool
}

type tokensData struct {
	Tokens   []tokenRow
	Venues   []string
	Policies []string
	Form     url.Values
	// Minted is shown once, in the answer to the POST that made it.
	Minted     string
	MintedInfo *admin.TokenInfo
	MFAActive  bool
}

func (c *Console) tokensData(r *http.Request) (*tokensData, []string) {
	var errs []string
	d := &tokensData{Form: url.Values{"scopes": {"market.read account.read order.*"}, "ttl": {"24h"}}}
	var list []admin.TokenInfo
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathTokens, nil, &list, ""); err != nil {
		errs = append(errs, c.userError(r, "listing tokens", err))
	}
	slices.SortFunc(list, func(a, b admin.TokenInfo) int { return b.CreatedAt.Compare(a.CreatedAt) })
	for _, t := range list {
		row := tokenRow{TokenInfo: t, ReadOnly: admin.ReadOnlyScopes(t.Scopes)}
		row.Seen, row.SeenKnown = c.o.Stats.Seen(t.ID)
		d.Tokens = append(d.Tokens, row)
	}
	var st admin.Status
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathStatus, nil, &st, ""); err == nil {
		for _, v := range st.Venues {
			d.Venues = append(d.Venues, v.ID)
		}
	}
	for _, p := range c.o.Policies.Policies() {
		d.Policies = append(d.Policies, p.Name)
	}
	if ms, err := c.o.MFA.Status(r.Context()); err == nil && ms.State == mfa.StateActive {
		d.MFAActive = true
	}
	return d, errs
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request) {
	d, errs := c.tokensData(r)
	c.render(w, r, http.StatusOK, "tokens", "Bots and tokens", &view{Data: d, Errors: errs})
}

// stepUp renews the session's admin MFA session with a code given in a
// form, when the session has none that is live; the gated action then
// goes through with it. With a live session the code is not spent.
func (c *Console) stepUp(r *http.Request, s *session, code string) error {
	if code == "" {
		return nil
	}
	if v, exp := s.mfa(); v.Len() > 0 && exp.After(c.now().Add(5*time.Second)) {
		return nil
	}
	ms, err := c.o.MFA.Status(r.Context())
	if err != nil || ms.State != mfa.StateActive {
		return err
	}
	var grant admin.MFASessionGrant
	if err := c.call(r.Context(), s, http.MethodPost, admin.PathMFA+"/login", admin.MFACodeRequest{Code: code}, &grant, ""); err != nil {
		return err
	}
	s.setMFA(secret.New([]byte(grant.Session)), grant.ExpiresAt)
	return nil
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request) {
	s := state(r).sess
	req, err := ParseCreateForm(r.PostForm)
	code, cerr := parseCode(r.PostForm)
	if err == nil {
		err = cerr
	}
	if err == nil {
		err = c.stepUp(r, s, code)
	}
	var m admin.MintedToken
	if err == nil {
		err = c.call(r.Context(), s, http.MethodPost, admin.PathTokens, req, &m, "")
	}
	d, errs := c.tokensData(r)
	if err != nil {
		d.Form = r.PostForm
		d.Form.Del("totp")
		d.Form.Del("csrf")
		errs = append(errs, c.userError(r, "creating the token", err))
		c.render(w, r, statusOf(err), "tokens", "Bots and tokens", &view{Data: d, Errors: errs})
		return
	}
	d.Minted, d.MintedInfo = m.Token, &m.Info
	c.render(w, r, http.StatusOK, "tokens", "Bots and tokens", &view{Data: d, Errors: errs,
		Notices: []string{"token " + m.Info.ID + " created: copy it now, it is not shown again"}})
}

// statusOf is the HTTP status a page answers after a failed action.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.Is(err, ErrInput):
		return http.StatusBadRequest
	case errors.As(err, &ae) && ae.Status < 500:
		return ae.Status
	}
	return http.StatusInternalServerError
}

func (c *Console) tokenAction(w http.ResponseWriter, r *http.Request) {
	s := state(r).sess
	id, err := parseTokenID(r.PathValue("id"))
	action := r.PathValue("action")
	if err == nil && !slices.Contains([]string{"freeze", "unfreeze", "revoke", "rotate"}, action) {
		err = badInput("no such token action")
	}
	if err == nil && action == "revoke" && r.PostForm.Get("confirm") != "on" {
		err = badInput("revoking cannot be undone: tick the confirmation box")
	}
	code, cerr := parseCode(r.PostForm)
	if err == nil {
		err = cerr
	}
	if err == nil {
		err = c.stepUp(r, s, code)
	}
	var m admin.MintedToken
	if err == nil {
		path := admin.PathTokens + "/" + url.PathEscape(id) + "/" + action
		if action == "rotate" {
			grace, gerr := parseTTL(strings.TrimSpace(r.PostForm.Get("grace")))
			if gerr != nil {
				err = badInput("grace: a duration like 10m or 1h")
			} else {
				err = c.call(r.Context(), s, http.MethodPost, path, admin.RotateTokenRequest{Grace: grace}, &m, "")
			}
		} else {
			err = c.call(r.Context(), s, http.MethodPost, path, struct{}{}, nil, "")
		}
	}
	d, errs := c.tokensData(r)
	if err != nil {
		errs = append(errs, c.userError(r, action+" "+id, err))
		c.render(w, r, statusOf(err), "tokens", "Bots and tokens", &view{Data: d, Errors: errs})
		return
	}
	v := &view{Data: d, Errors: errs}
	if action == "rotate" {
		d.Minted, d.MintedInfo = m.Token, &m.Info
		v.Notices = []string{"token " + id + " rotated to " + m.Info.ID + ": copy the new token now, it is not shown again"}
	} else {
		v.Notices = []string{"token " + id + ": " + action + " done"}
	}
	c.render(w, r, http.StatusOK, "tokens", "Bots and tokens", v)
}

// ---- credentials

type credentialRow struct {
	vault.Info
	Venues []string
}

func (c *Console) credentialsPage(w http.ResponseWriter, r *http.Request) {
	var errs []string
	var infos []vault.Info
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathSecrets, nil, &infos, ""); err != nil {
		errs = append(errs, c.userError(r, "listing credentials", err))
	}
	var st admin.Status
	_ = c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathStatus, nil, &st, "")
	rows := make([]credentialRow, 0, len(infos))
	for _, i := range infos {
		if strings.HasPrefix(i.Name, mfa.ReservedPrefix) {
			continue // keystile's own (the TOTP secret)
		}
		row := credentialRow{Info: i}
		for _, v := range st.Venues {
			if v.Credential == i.Name {
				row.Venues = append(row.Venues, v.ID)
			}
		}
		rows = append(rows, row)
	}
	var missing []admin.VenueStatus
	for _, v := range st.Venues {
		if v.CredentialState == "missing" {
			missing = append(missing, v)
		}
	}
	c.render(w, r, http.StatusOK, "credentials", "Credentials", &view{Errors: errs, Data: struct {
		Rows    []credentialRow
		Missing []admin.VenueStatus
	}{rows, missing}})
}

// ---- policies

type policiesData struct {
	Policies []PolicyInfo
	Tokens   []admin.TokenInfo
	Form     url.Values
	Result   *ExplainResult
}

func (c *Console) policiesData(r *http.Request) *policiesData {
	d := &policiesData{Policies: c.o.Policies.Policies(), Form: url.Values{"method": {"POST"}, "content_type": {"application/x-www-form-urlencoded"}}}
	var list []admin.TokenInfo
	_ = c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathTokens, nil, &list, "")
	for _, t := range list {
		if t.State == "active" || t.State == "grace" || t.State == "frozen" {
			d.Tokens = append(d.Tokens, t)
		}
	}
	return d
}

func (c *Console) policiesPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "policies", "Policies", &view{Data: c.policiesData(r)})
}

func (c *Console) explain(w http.ResponseWriter, r *http.Request) {
	d := c.policiesData(r)
	d.Form = r.PostForm
	d.Form.Del("csrf")
	req, err := ParseExplainForm(r.PostForm)
	var res ExplainResult
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		res, err = c.o.Policies.Explain(ctx, req)
		cancel()
	}
	if err != nil {
		c.render(w, r, statusOf(err), "policies", "Policies", &view{Data: d, Errors: []string{c.userError(r, "explaining the request", err)}})
		return
	}
	d.Result = &res
	c.render(w, r, http.StatusOK, "policies", "Policies", &view{Data: d})
}

// ---- budgets

type budgetView struct {
	BudgetRow
	Bar barView
}

func (c *Console) budgetsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rows, err := c.o.Policies.Budgets(ctx)
	var errs []string
	if err != nil {
		errs = append(errs, c.userError(r, "reading budgets", err))
	}
	out := make([]budgetView, 0, len(rows))
	for _, b := range rows {
		u, _ := b.Used.Float64()
		l, _ := b.Limit.Float64()
		out = append(out, budgetView{BudgetRow: b, Bar: bar(u, l)})
	}
	c.render(w, r, http.StatusOK, "budgets", "Budgets", &view{Data: out, Errors: errs})
}

// ---- audit

type verifyCache struct {
	mu     sync.Mutex
	at     time.Time
	report audit.Report
	err    string
	bad    *audit.VerifyError
	done   bool
}

type verifyView struct {
	Done   bool
	At     time.Time
	Report audit.Report
	Err    string
	Bad    *audit.VerifyError
}

func (v *verifyCache) view() verifyView {
	v.mu.Lock()
	defer v.mu.Unlock()
	return verifyView{Done: v.done, At: v.at, Report: v.report, Err: v.err, Bad: v.bad}
}

type auditData struct {
	Query    AuditQuery
	Form     url.Values
	Page     AuditPage
	Searched bool
	Verify   verifyView
	Audit    *admin.AuditStatus
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	d := &auditData{Form: r.URL.Query(), Verify: c.verify.view()}
	var st admin.Status
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathStatus, nil, &st, ""); err == nil {
		d.Audit = st.Audit
	}
	q, err := ParseAuditQuery(r.URL.Query(), c.now())
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "audit", "Audit log", &view{Data: d, Errors: []string{err.Error()}})
		return
	}
	d.Query = q
	if len(r.URL.Query()) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		d.Page, err = c.o.Audit.Search(ctx, q)
		d.Searched = true
		if err != nil {
			c.render(w, r, statusOf(err), "audit", "Audit log", &view{Data: d, Errors: []string{c.userError(r, "searching the audit log", err)}})
			return
		}
	}
	c.render(w, r, http.StatusOK, "audit", "Audit log", &view{Data: d})
}

func (c *Console) auditRecord(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.render(w, r, http.StatusBadRequest, "record", "Audit record", &view{Errors: []string{"not a record number"}})
		return
	}
	rec, err := c.o.Audit.Record(r.Context(), seq)
	switch {
	case errors.Is(err, ErrNotFound):
		c.render(w, r, http.StatusNotFound, "record", "Audit record", &view{Errors: []string{"no record " + strconv.FormatUint(seq, 10)}})
		return
	case err != nil:
		c.render(w, r, http.StatusInternalServerError, "record", "Audit record", &view{Errors: []string{c.userError(r, "reading the record", err)}})
		return
	}
	c.render(w, r, http.StatusOK, "record", "Audit record "+strconv.FormatUint(seq, 10), &view{Data: struct {
		Rec audit.Record
		Raw string
	}{rec, string(rec.Raw)}})
}

// auditVerify recomputes the chain and checkpoints (one at a time); the
// result is kept and shown on the audit page.
func (c *Console) auditVerify(w http.ResponseWriter, r *http.Request) {
	if !c.verify.mu.TryLock() {
		http.Redirect(w, r, "/audit", http.StatusSeeOther)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 80*time.Second)
	rep, err := c.o.Audit.Verify(ctx)
	cancel()
	c.verify.at, c.verify.report, c.verify.done, c.verify.err, c.verify.bad = c.now(), rep, true, "", nil
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve):
		c.verify.bad = ve
	case err != nil:
		c.verify.err = c.userError(r, "verifying the audit log", err)
	}
	c.verify.mu.Unlock()
	http.Redirect(w, r, "/audit", http.StatusSeeOther)
}

// ---- alerts

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request) {
	var errs []string
	var st alert.Status
	if err := c.call(r.Context(), state(r).sess, http.MethodGet, admin.PathAlerts, nil, &st, ""); err != nil {
		errs = append(errs, c.userError(r, "reading alert sinks", err))
	}
	d := struct {
		Alerts    []alert.Alert
		Status    alert.Status
		Detectors []Detector
		Built     bool
	}{Status: st}
	if c.o.Alerts != nil {
		d.Alerts = c.o.Alerts.Recent(time.Time{})
	}
	if c.o.Detectors != nil {
		d.Built = true
		d.Detectors = c.o.Detectors.Detectors()
	}
	c.render(w, r, http.StatusOK, "alerts", "Alerts and detectors", &view{Data: d, Errors: errs})
}

// ---- kill switch

type killData struct {
	State     KillState
	MFAActive bool
	Form      url.Values
}

func (c *Console) killView(r *http.Request) (*killData, []string) {
	d := &killData{Form: url.Values{}}
	var errs []string
	var err error
	if d.State, err = c.o.KillSwitch.State(r.Context()); err != nil {
		errs = append(errs, c.userError(r, "reading the kill switch", err))
	}
	if ms, err := c.o.MFA.Status(r.Context()); err == nil && ms.State == mfa.StateActive {
		d.MFAActive = true
	}
	return d, errs
}

func (c *Console) killPage(w http.ResponseWriter, r *http.Request) {
	d, errs := c.killView(r)
	c.render(w, r, http.StatusOK, "killswitch", "Kill switch", &view{Data: d, Errors: errs})
}

// killConfirm checks the kill switch's confirmation (the box and the
// typed word) and the second factor: a fresh code is needed even with a
// live admin session, when one is enrolled.
func (c *Console) killConfirm(r *http.Request, word, action string) error {
	if r.PostForm.Get("confirm") != "on" || strings.TrimSpace(r.PostForm.Get("word")) != word {
		return badInput("confirm: tick the box and type %s", word)
	}
	code, err := parseCode(r.PostForm)
	if err != nil {
		return err
	}
	s := state(r).sess
	at := mfa.Attempt{Principal: s.principal, Action: action, RequestID: state(r).id, Method: r.Method, Path: r.URL.Path}
	if _, err := c.o.MFA.Authorize(r.Context(), mfa.Credentials{Code: code, RequireCode: true}, at); err != nil {
		switch {
		case errors.Is(err, mfa.ErrRequired), errors.Is(err, mfa.ErrMalformedCode):
			return badInput("enter a current TOTP code: the kill switch asks for one every time")
		case errors.Is(err, mfa.ErrInvalidCode):
			return badInput("the TOTP code is not valid")
		case errors.Is(err, mfa.ErrReplay):
			return badInput("this TOTP code was already used: wait for the next one")
		}
		var le *mfa.LockedError
		if errors.As(err, &le) {
			return badInput("too many wrong codes: second-factor checks are locked until %s", le.Until.UTC().Format(time.RFC3339))
		}
		return err
	}
	return nil
}

func (c *Console) killTrip(w http.ResponseWriter, r *http.Request) {
	s := state(r).sess
	reason, err := field(r.PostForm, "reason", true)
	cancelOrders := r.PostForm.Get("cancel_orders") == "on"
	if err == nil {
		err = c.killConfirm(r, "STOP", "panic.trip")
	}
	var ks KillState
	if err == nil {
		ks, err = c.o.KillSwitch.Trip(r.Context(), reason, cancelOrders, string(s.principal))
	}
	detail := fmt.Sprintf("session %s; reason %s; cancel orders %t", s.handle, shown(reason), cancelOrders)
	if err != nil {
		c.event(r, "panic.trip", audit.Deny, statusOf(err), string(s.principal), detail)
		d, errs := c.killView(r)
		d.Form = r.PostForm
		c.render(w, r, statusOf(err), "killswitch", "Kill switch", &view{Data: d, Errors: append(errs, c.userError(r, "tripping the kill switch", err))})
		return
	}
	c.event(r, "panic.trip", audit.Allow, http.StatusOK, string(s.principal), detail+fmt.Sprintf("; %d tokens frozen", ks.Frozen))
	c.log.Warn("console: kill switch tripped", "principal", string(s.principal), "session", s.handle, "frozen", ks.Frozen, "cancel_orders", cancelOrders)
	d, errs := c.killView(r)
	c.render(w, r, http.StatusOK, "killswitch", "Kill switch", &view{Data: d, Errors: errs, Notices: []string{fmt.Sprintf("kill switch tripped: %d tokens frozen", ks.Frozen)}})
}

func (c *Console) killClear(w http.ResponseWriter, r *http.Request) {
	s := state(r).sess
	err := c.killConfirm(r, "RESUME", "panic.clear")
	var ks KillState
	if err == nil {
		ks, err = c.o.KillSwitch.Clear(r.Context(), string(s.principal))
	}
	detail := "session " + s.handle
	if err != nil {
		c.event(r, "panic.clear", audit.Deny, statusOf(err), string(s.principal), detail)
		d, errs := c.killView(r)
		c.render(w, r, statusOf(err), "killswitch", "Kill switch", &view{Data: d, Errors: append(errs, c.userError(r, "clearing the kill switch", err))})
		return
	}
	c.event(r, "panic.clear", audit.Allow, http.StatusOK, string(s.principal), detail)
	c.log.Warn("console: kill switch cleared", "principal", string(s.principal), "session", s.handle)
	d, errs := c.killView(r)
	_ = ks
	c.render(w, r, http.StatusOK, "killswitch", "Kill switch", &view{Data: d, Errors: errs, Notices: []string{"kill switch cleared: the tokens it froze are unfrozen"}})
}
