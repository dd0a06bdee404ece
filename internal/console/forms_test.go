package console

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

func TestParseCreateForm(t *testing.T) {
	base := func(kv ...string) url.Values {
		v := url.Values{"name": {"grid-bot"}, "venues": {"binance"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []struct {
		name string
		in   url.Values
		err  string
		want func(t *testing.T, v url.Values)
	}{
		{"minimal", base(), "", nil},
		{"everything", base("scopes", "market.read, order.*", "policy", "scalper", "ttl", "7d", "cidrs", "127.0.0.1 10.0.0.0/24", "test", "on"), "", nil},
		{"no name", base("name", ""), "name is required", nil},
		{"name with a newline", base("name", "a\nb"), "one line", nil},
		{"name with markup", base("name", "<b>x</b>"), "name:", nil},
		{"no venue", url.Values{"name": {"x"}}, "venues", nil},
		{"bad venue", base("venues", "Bin/ance"), "not a venue id", nil},
		{"bad scope", base("scopes", "order.**.x"), "not a scope", nil},
		{"bad policy", base("policy", "../x"), "not a policy", nil},
		{"bad cidr", base("cidrs", "10.0.0.0/33"), "not an address", nil},
		{"bad ttl", base("ttl", "forever"), "ttl", nil},
		{"negative ttl", base("ttl", "-1h"), "ttl", nil},
		{"huge ttl days", base("ttl", "99999d"), "ttl", nil},
		{"bad test flag", base("test", "maybe"), "test", nil},
		{"too many venues", url.Values{"name": {"x"}, "venues": {strings.Repeat("a,", 40)}}, "at most", nil},
		{"long field", base("name", strings.Repeat("a", 300)), "at most", nil},
		{"invalid utf-8", base("name", "\xff"), "one line", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseCreateForm(tc.in)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if req.Name == "" || len(req.Venues) == 0 {
					t.Fatalf("%+v", req)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInput) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
	req, _ := ParseCreateForm(base("scopes", "market.read, order.*", "ttl", "7d", "cidrs", "127.0.0.1 10.0.0.0/24", "test", "on"))
	if len(req.Scopes) != 2 || req.TTL != 7*24*time.Hour || len(req.CIDRs) != 2 || !req.Test {
		t.Fatalf("%+v", req)
	}
}

func TestParseAuditQuery(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   string
		err  string
		want AuditQuery
	}{
		{"empty", "", "", AuditQuery{Limit: DefaultAuditLimit}},
		{"all", "token=tok_ab12cd34&venue=binance&decision=deny&op=admin.*&since=90m&until=2026-03-04T11:59:00Z&limit=5", "",
			AuditQuery{Token: "tok_ab12cd34", Venue: "binance", Decision: "deny", Operation: "admin.*", Since: now.Add(-90 * time.Minute), Until: now.Add(-time.Minute), Limit: 5}},
		{"days", "since=7d", "", AuditQuery{Since: now.Add(-7 * 24 * time.Hour), Limit: DefaultAuditLimit}},
		{"datetime-local", "since=2026-03-01T10:30", "", AuditQuery{Since: time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC), Limit: DefaultAuditLimit}},
		{"a token, not an id", "token=kst_live_abc", "never the token", AuditQuery{}},
		{"bad id", "token=tok_<x>", "public id", AuditQuery{}},
		{"bad decision", "decision=maybe", "decision", AuditQuery{}},
		{"bad op", "op=order place", "operation", AuditQuery{}},
		{"bad since", "since=yesterday", "since", AuditQuery{}},
		{"negative since", "since=-5m", "since", AuditQuery{}},
		{"year 1", "since=0001-01-01T00:00:00Z", "since", AuditQuery{}},
		{"since after until", "since=1h&until=2h", "before until", AuditQuery{}},
		{"limit zero", "limit=0", "limit", AuditQuery{}},
		{"limit huge", "limit=100000", "limit", AuditQuery{}},
		{"venue with slash", "venue=a/b", "venue", AuditQuery{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.in)
			q, err := ParseAuditQuery(v, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInput) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !q.Since.Equal(tc.want.Since) || !q.Until.Equal(tc.want.Until) {
				t.Fatalf("times %v %v", q.Since, q.Until)
			}
			q.Since, q.Until, tc.want.Since, tc.want.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if q != tc.want {
				t.Fatalf("%+v, want %+v", q, tc.want)
			}
		})
	}
}

func TestAuditQueryMatches(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	rec := audit.Record{Hash: "h", Time: t0, Venue: "binance", Decision: audit.Deny, Operation: "admin.token.freeze"}
	for _, tc := range []struct {
		name string
		q    AuditQuery
		want bool
	}{
		{"nothing", AuditQuery{}, true},
		{"venue", AuditQuery{Venue: "binance"}, true},
		{"other venue", AuditQuery{Venue: "kraken"}, false},
		{"decision", AuditQuery{Decision: audit.Allow}, false},
		{"op prefix", AuditQuery{Operation: "admin.*"}, true},
		{"op exact", AuditQuery{Operation: "admin.token.freeze"}, true},
		{"op other", AuditQuery{Operation: "admin.token"}, false},
		{"since equal", AuditQuery{Since: t0}, true},
		{"since after", AuditQuery{Since: t0.Add(time.Second)}, false},
		{"until equal", AuditQuery{Until: t0}, false},
	} {
		if got := tc.q.Matches(rec); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	if (AuditQuery{}).Matches(audit.Record{}) {
		t.Error("a malformed record (no hash) matched")
	}
}

func TestParseExplainForm(t *testing.T) {
	base := func(kv ...string) url.Values {
		v := url.Values{"token": {"tok_ab12cd34"}, "method": {"POST"}, "path": {"/binance/api/v3/order?symbol=BTCUSDT"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	r, err := ParseExplainForm(base("query", "side=BUY", "content_type", "application/json", "body", "{}\r\n", "ref_price", "30000.5"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Venue != "binance" || r.Path != "/api/v3/order" || r.Query != "symbol=BTCUSDT&side=BUY" || string(r.Body) != "{}\n" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%+v", r)
	}
	for _, tc := range []struct{ name, k, v, err string }{
		{"no token", "token", "", "token"},
		{"a raw token", "token", "kst_live_x", "token"},
		{"bad method", "method", "CONNECT", "method"},
		{"relative path", "path", "binance/x", "path"},
		{"absolute url", "path", "https://evil.example/x", "path"},
		{"dot segments", "path", "/binance/../admin", "dot"},
		{"no venue", "path", "//x", "venue"},
		{"encoded slash venue", "path", "/bin%2Fance/x", "venue"},
		{"bad query", "query", "%zz", "query"},
		{"bad content type", "content_type", "text/html", "content type"},
		{"bad price", "ref_price", "-1", "price"},
		{"price exponent", "ref_price", "1e9", "price"},
		{"price nan", "ref_price", "NaN", "price"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseExplainForm(base(tc.k, tc.v)); err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInput) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// FuzzParseAuditQuery: any query string is parsed or refused with an
// input error, never a panic; what parses encodes to a query that parses
// to the same filters.
func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"", "token=tok_ab12cd34&venue=binance&decision=deny&op=admin.*&since=90m&limit=5",
		"since=2026-03-01T10:30&until=2026-03-02", "since=7d", "token=kst_live_x", "limit=-1", "since=1e400h", "op=%00", "decision=allow&decision=deny"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseAuditQuery(v, now)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("not an input error: %v", err)
			}
			return
		}
		v2, err := url.ParseQuery(q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		q2, err := ParseAuditQuery(v2, now)
		if err != nil {
			t.Fatalf("re-encoded %q: %v", q.Encode(), err)
		}
		if q2.Token != q.Token || q2.Venue != q.Venue || q2.Decision != q.Decision || q2.Operation != q.Operation || q2.Limit != q.Limit ||
			!q2.Since.Equal(q.Since) || !q2.Until.Equal(q.Until) {
			t.Fatalf("round trip: %+v -> %+v", q, q2)
		}
	})
}

// FuzzForms: the token and explain forms and the code field accept or
// refuse any input with an input error, never a panic; accepted values
// are bounded and single-line.
func FuzzForms(f *testing.F) {
	for _, s := range []string{"name=bot&venues=binance&scopes=order.*&ttl=7d&cidrs=10.0.0.0/8&test=on",
		"token=tok_ab12cd34&method=POST&path=/binance/api/v3/order%3Fa%3D1&body=x&ref_price=1.5&content_type=application/json",
		"totp=123456", "totp=abcd-efgh-jkmn", "name=%ff&venues=", "path=/x/%2e%2e/y&token=tok_aaaa"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if req, err := ParseCreateForm(v); err == nil {
			if strings.ContainsAny(req.Name, "\r\n\x00<>") || len(req.Venues) == 0 || len(req.Venues) > maxListItems {
				t.Fatalf("accepted %+v", req)
			}
		} else if !errors.Is(err, ErrInput) {
			t.Fatalf("create: %v", err)
		}
		if r, err := ParseExplainForm(v); err == nil {
			if !strings.HasPrefix(r.Path, "/") || strings.Contains(r.Venue, "/") || strings.Contains(r.Path, "/../") {
				t.Fatalf("accepted %+v", r)
			}
		} else if !errors.Is(err, ErrInput) {
			t.Fatalf("explain: %v", err)
		}
		if c, err := parseCode(v); err == nil && c != "" && !codeRE.MatchString(c) {
			t.Fatalf("code %q", c)
		} else if err != nil && !errors.Is(err, ErrInput) {
			t.Fatalf("code: %v", err)
		}
	})
}
