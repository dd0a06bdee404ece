package doctor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/runexec"
	"github.com/keystile/keystile/internal/vault"
)

// DefaultRotationDays applies to credentials without rotation_days.
const DefaultRotationDays = 90

// MaxTokenLifetime is the longest remaining lifetime doctor accepts.
const MaxTokenLifetime = 90 * 24 * time.Hour

func (r *run) noServer(c Check) (Check, bool) {
	if r.Server == nil {
		c.Result, c.Detail = Skip, "server not running ("+reason(r.ServerReason, "no admin socket")+"): tokens live in the server"
		return c, true
	}
	return c, false
}

func liveToken(state string) bool {
	return state == "active" || state == "frozen" || state == "grace"
}

func (r *run) tokensExpiry() Check {
	c := Check{ID: "tokens.expiry", Title: "client tokens expire", Severity: Medium,
		Fix: "rotate long-lived tokens into short ones (`keystile token create --ttl 24h`, then revoke the old one) and lower tokens.max_ttl"}
	if c, done := r.noServer(c); done {
		return c
	}
	ts, err := r.Server.ListTokens(r.ctx)
	if err != nil {
		c.Result, c.Detail = Skip, "list tokens: "+err.Error()
		return c
	}
	var bad []string
	live := 0
	for _, t := range ts {
		if !liveToken(t.State) {
			continue
		}
		live++
		switch {
		case t.ExpiresAt.IsZero():
			bad = append(bad, fmt.Sprintf("token %s (%s) never expires", t.ID, t.Name))
		case t.ExpiresAt.Sub(r.now) > MaxTokenLifetime:
			bad = append(bad, fmt.Sprintf("token %s (%s) expires %s, more than %d days away", t.ID, t.Name, t.ExpiresAt.UTC().Format(time.DateOnly), int(MaxTokenLifetime.Hours()/24)))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%d live token(s), each expiring within %d days", live, int(MaxTokenLifetime.Hours()/24))
	return c
}

// DangerousScope reports whether a scope grants moving money or keys:
// wallet.* and apikey.* operations, or any withdraw/transfer operation.
func DangerousScope(s string) bool {
	first, _, _ := strings.Cut(s, ".")
	return first == "wallet" || first == "apikey" || strings.Contains(s, "withdraw") || strings.Contains(s, "transfer")
}

func (r *run) tokensScopes() Check {
	c := Check{ID: "tokens.scopes", Title: "no token may withdraw, transfer or manage keys", Severity: High,
		Fix: "give bots only market, account and order scopes; mint a separate short-lived token for the rare withdrawal"}
	if c, done := r.noServer(c); done {
		return c
	}
	ts, err := r.Server.ListTokens(r.ctx)
	if err != nil {
		c.Result, c.Detail = Skip, "list tokens: "+err.Error()
		return c
	}
	var bad []string
	for _, t := range ts {
		if !liveToken(t.State) {
			continue
		}
		var ds []string
		for _, s := range t.Scopes {
			if DangerousScope(s) {
				ds = append(ds, s)
			}
		}
		if len(ds) > 0 {
			bad = append(bad, fmt.Sprintf("token %s (%s) has %s", t.ID, t.Name, strings.Join(ds, ", ")))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, "no live token has a wallet, apikey, withdraw or transfer scope"
	return c
}

func (r *run) credentialRotation() Check {
	c := Check{ID: "credentials.rotation", Title: "credentials are rotated within their period", Severity: Medium,
		Fix: "create a new key at the venue, `keystile secret rotate NAME`, then delete the old key at the venue"}
	if r.infoOK != "" {
		c.Result, c.Detail = Skip, r.infoOK
		return c
	}
	var bad []string
	n := 0
	for _, i := range r.infos {
		if i.State != vault.StateActive {
			continue
		}
		n++
		days := i.RotationDays
		if days <= 0 {
			days = DefaultRotationDays
		}
		if age := i.Age(r.now); age > time.Duration(days)*24*time.Hour {
			bad = append(bad, fmt.Sprintf("%s: last rotated %s, %d days ago (period %d days)", i.Name, i.RotatedAt.UTC().Format(time.DateOnly), int(age.Hours()/24), days))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%d active credential(s) within their rotation period", n)
	return c
}

func (r *run) compromised() Check {
	c := Check{ID: "vault.compromised", Title: "compromised values are remembered", Severity: Info}
	if r.Vault == nil {
		c.Result, c.Detail = Skip, "vault not opened ("+reason(r.VaultReason, "no vault")+")"
		return c
	}
	fps, err := r.Vault.Fingerprints(r.ctx)
	if err != nil {
		c.Result, c.Detail = Skip, "vault fingerprints: "+err.Error()
		return c
	}
	var names []string
	for _, f := range fps {
		if f.Compromised {
			names = append(names, f.Credential+"#"+f.Field)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	c.Result = Pass
	if len(names) == 0 {
		c.Detail = "no value has been revoked as compromised"
		return c
	}
	c.Detail = fmt.Sprintf("%d compromised fingerprint(s) held; setting those values again is refused (%s)", len(names), strings.Join(names, ", "))
	return c
}

func (r *run) auditChain() Check {
	c := Check{ID: "audit.chain", Title: "audit log hash chain verifies", Severity: High,
		Fix: "the audit log was altered or damaged: keep a copy for investigation, run `keystile audit verify` (it names the first bad record) and compare with an outside copy (audit.mirror)"}
	if r.AuditVerify == nil {
		c.Result, c.Detail = Skip, r.AuditReason
		if c.Detail == "" {
			c.Detail = "the audit log cannot be read"
		}
		return c
	}
	rep, err := r.AuditVerify(r.ctx)
	if err != nil {
		c.Result, c.Detail = Fail, err.Error()
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%d records and %d signed checkpoints verify", rep.Records, rep.Checkpoints)
	return c
}

func (r *run) execInjections() Check {
	c := Check{ID: "exec.injections", Title: "bots get tokens, not real secrets", Severity: Medium,
		Fix: "point the bot at KEYSTILE_URL with its kst_ token instead of --env NAME=REF, then rotate the injected credentials"}
	if r.DataDir == "" {
		c.Result, c.Detail = Skip, "no data directory"
		return c
	}
	recs, err := runexec.ReadInjections(r.DataDir)
	if err != nil {
		c.Result, c.Detail = Skip, err.Error()
		return c
	}
	if len(recs) == 0 {
		c.Result, c.Detail = Pass, "`keystile exec` never injected a real secret"
		return c
	}
	type agg struct {
		n    int
		last time.Time
	}
	by := map[string]*agg{}
	for _, x := range recs {
		k := fmt.Sprintf("%s=%s (command %s)", x.Var, x.Ref, x.Command)
		a := by[k]
		if a == nil {
			a = &agg{}
			by[k] = a
		}
		a.n++
		if x.At.After(a.last) {
			a.last = x.At
		}
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s: %d time(s), last %s", k, by[k].n, by[k].last.UTC().Format(time.RFC3339)))
	}
	c.Result, c.Detail = Warn, list(lines)
	return c
}
