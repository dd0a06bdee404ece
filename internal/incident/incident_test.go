package incident_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/incident"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.*")

var keys = audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize)), Identity: []byte("incident test identity key 00001")}

// t0 is when the scripted incident starts.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// writeIncident writes a scripted incident to a JSONL audit log with a
// fixed clock: a bot trades, a detector flags a large order, the bot kills
// itself, an admin panics and cancels orders, the bot keeps trying and is
// refused, the admin revokes its token, clears the switch and mints a
// replacement.
func writeIncident(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	st, err := audit.OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	tick := t0
	var next time.Time
	now := func() time.Time { return next }
	l, err := audit.Open(context.Background(), audit.Options{Store: st, Keys: keys, Now: now, Linger: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	step := func(d time.Duration) { tick = tick.Add(d); next = tick }
	n := uint64(0)
	wait := func() {
		n++
		for deadline := time.Now().Add(5 * time.Second); l.Stats().Records < n; {
			if time.Now().After(deadline) {
				t.Fatal("record not written")
			}
			time.Sleep(time.Millisecond)
		}
	}
	req := func(d time.Duration, e audit.Event) {
		step(d)
		if e.Decision == "" {
			e.Decision = audit.Allow
		}
		if e.Source == "" {
			e.Source = "10.0.0.7"
		}
		l.Record(ctx, e)
		wait()
	}
	act := func(d time.Duration, e audit.Event) {
		step(d)
		if err := l.Action(ctx, e); err != nil {
			t.Fatal(err)
		}
		n++
	}
	order := func(tok, venueID, notional, voi string) audit.Event {
		return audit.Event{RequestID: "r-" + voi, TokenID: tok, Venue: venueID, Method: "POST", Path: "/api/v3/order", Operation: "order.place",
			Instrument: "BTCUSDT", Side: "buy", Quantity: "0.01", Price: "30000", Notional: notional, Status: 200, Upstream: 200, VenueOrderID: voi}
	}
	req(time.Second, audit.Event{RequestID: "r-1", TokenID: "tok_bot", Venue: "binance", Method: "GET", Path: "/api/v3/account", Operation: "account.read", Status: 200, Upstream: 200})
	req(time.Second, order("tok_bot", "binance", "300 USDT", "1001"))
	req(time.Second, audit.Event{RequestID: "r-2", TokenID: "tok_other", Venue: "kraken", Method: "GET", Path: "/0/public/Ticker", Operation: "market.read", Status: 200, Upstream: 200, Source: "10.0.0.9"})
	req(time.Second, order("tok_bot", "binance", "9000 USDT", "1002"))
	// The detector's records, as internal/detect writes them: the alert,
	// then a throttle it could not apply twice (in force), then a freeze.
	det := func(d time.Duration, action, result string) {
		step(d)
		l.Detect(ctx, audit.Event{RequestID: "fnd_1", TokenID: "tok_bot", Venue: "binance", Operation: "detect." + action, Decision: "critical",
			Rule: "detect.order_size", Instrument: "BTCUSDT", Side: "buy", Quantity: "0.3", Price: "30000", Notional: "9000 USDT",
			Evidence: `{"finding":"fnd_1","detector":"order_size","severity":"critical","subject":"token:tok_bot","summary":"order 30x the bot's usual size",` +
				`"action":"` + action + `","target":"tok_bot","result":"` + result + `","evidence":{"observed":9000,"baseline":300,"factor":5,"requests":["r-1002"]}}`})
		wait()
	}
	det(time.Second, "alert", "done")
	det(0, "throttle", "in_force")
	// An admin API write is in the log as an outcome record: not the bot's.
	req(0, audit.Event{RequestID: "adm_1", Method: "POST", Path: "/v1/tokens", Operation: "admin.tokens.create", Source: "uid:1000", Status: 200})
	det(100*time.Millisecond, "freeze", "done")
	req(400*time.Millisecond, audit.Event{RequestID: "k-1", TokenID: "tok_bot", Method: "POST", Path: "/-/kill", Operation: "killswitch.bot", Rule: "killswitch.bot", Status: 200})
	act(0, audit.Event{RequestID: "k-1", TokenID: "tok_bot", Operation: "killswitch.engage", Decision: audit.Allow, Rule: "killswitch.bot",
		Actor: "bot", Reason: "drawdown limit", Detail: `{"trip":1,"scope":"token","new":true,"persisted":true,"in_flight":0,"unfinished":0}`})
	act(2*time.Second, audit.Event{RequestID: "p-1", Operation: "killswitch.engage", Decision: audit.Allow, Rule: "killswitch.panic",
		Actor: "admin uid=1000", Reason: "bot compromised | rotating keys", Detail: `{"trip":2,"scope":"all","new":true,"persisted":true,"in_flight":2,"unfinished":0}`})
	act(time.Second, audit.Event{RequestID: "p-1", Venue: "binance", Operation: "orders.cancel_all", Decision: audit.Allow, Rule: "killswitch.cancel_orders",
		Actor: "admin uid=1000", Reason: "bot compromised | rotating keys", Detail: `{"endpoint":"live","supported":true,"cancelled":2,"order_ids":["1001","1002"],"failed":0,"passes":1,"requests":4}`})
	act(0, audit.Event{RequestID: "p-1", Venue: "dmarket", Operation: "orders.cancel_all", Decision: audit.Error, Rule: "killswitch.cancel_orders",
		Actor: "admin uid=1000", Reason: "bot compromised | rotating keys", Error: "this venue type has no cancel-all procedure: cancel its orders at the venue",
		Detail: `{"endpoint":"live","supported":false,"cancelled":0,"failed":0,"passes":0,"requests":0}`})
	for i := range 2 {
		e := order("tok_bot", "binance", "", "")
		e.RequestID, e.Decision, e.Rule, e.Status, e.Upstream = "r-x"+string(rune('a'+i)), audit.Deny, "token.killed", 403, 0
		req(time.Second, e)
	}
	act(time.Minute, audit.Event{TokenID: "tok_bot", Operation: "token.revoke", Decision: audit.Allow, Rule: "admin.token.revoke", Actor: "admin uid=1000", RequestID: "a-1"})
	act(time.Minute, audit.Event{Operation: "killswitch.clear", Decision: audit.Allow, Rule: "killswitch.clear", Actor: "admin uid=1000",
		Reason: "keys rotated, bot redeployed", Detail: `{"trip":2,"scope":"all","engaged_rule":"killswitch.panic"}`, RequestID: "c-1"})
	act(time.Second, audit.Event{TokenID: "tok_new", Operation: "token.create", Decision: audit.Allow, Rule: "admin.token.create", Actor: "admin uid=1000",
		Detail: `{"name":"grid-bot-2","policy":"scalper","test":false}`, RequestID: "a-2"})
	req(time.Second, audit.Event{RequestID: "r-9", TokenID: "tok_new", Venue: "binance", Method: "GET", Path: "/api/v3/account", Operation: "account.read", Status: 200, Upstream: 200})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return path
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

func TestReportGolden(t *testing.T) {
	path := writeIncident(t)
	gen := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		o    incident.Options
	}{
		{"all", incident.Options{Since: t0, GeneratedAt: gen}},
		{"token", incident.Options{Since: t0, GeneratedAt: gen, TokenHash: keys.TokenHash("tok_bot"), TokenLabel: "tok_bot"}},
		{"window", incident.Options{Since: t0.Add(3 * time.Second), Until: t0.Add(7 * time.Second), GeneratedAt: gen, KeyRecords: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := audit.OpenJSONLReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rep, err := incident.Build(context.Background(), r, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			var md, js bytes.Buffer
			if err := rep.Markdown(&md); err != nil {
				t.Fatal(err)
			}
			if err := rep.JSON(&js); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".golden.md", md.Bytes())
			golden(t, tt.name+".golden.json", js.Bytes())
		})
	}
}

// TestReportFacts checks the facts the golden files show, so that an
// -update cannot silently bless a wrong report.
func TestReportFacts(t *testing.T) {
	path := writeIncident(t)
	r, err := audit.OpenJSONLReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := incident.Build(context.Background(), r, incident.Options{Since: t0, TokenHash: keys.TokenHash("tok_bot"), TokenLabel: "tok_bot"})
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(5*time.Second + 100*time.Millisecond); !rep.ContainedAt.Equal(want) {
		t.Errorf("contained at %v, want %v (the detector's freeze)", rep.ContainedAt, want)
	}
	phases := map[string]int{}
	for _, a := range rep.Actions {
		phases[a.Phase]++
	}
	// The replacement token's creation belongs to another token: left out.
	// The detector's alert and its throttle already in force detect; its
	// freeze (carried out) contains, before the bot's own kill and the
	// panic.
	if phases["detect"] != 2 || phases["contain"] != 3 || phases["eradicate"] != 3 || phases["recover"] != 1 {
		t.Errorf("phases %v", phases)
	}
	// The admin API write is no request of the bot's.
	b, a := rep.Before, rep.After
	if b.Requests != 3 || b.Orders != 2 || b.Notional["USDT"] != "9300" || a.Requests != 3 || a.Denied != 2 || a.Orders != 0 ||
		a.ByRule["token.killed"] != 2 || b.ByOperation["admin.tokens.create"] != 0 || a.ByOperation["admin.tokens.create"] != 0 {
		t.Errorf("before %+v\nafter %+v", b, a)
	}
	var md bytes.Buffer
	_ = rep.Markdown(&md)
	for _, want := range []string{"kill switch engaged: every token on every venue (2 requests in flight waited for)",
		"orders cancelled on binance (live): 2 [1001 1002]", "orders NOT cancelled on dmarket (live)", "bot compromised \\| rotating keys",
		"revoke token tok_bot", "| admin uid=1000 |", "detector order_size: token tok_bot frozen, finding fnd_1",
		"detector order_size: token tok_bot throttled [in_force]", "| detect | order 30x the bot's usual size | detect.order_size |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md.String(), "tok_new") || strings.Contains(md.String(), "tok_other") {
		t.Error("another token's records in a one-token report")
	}
}

func TestReportRange(t *testing.T) {
	path := writeIncident(t)
	r, _ := audit.OpenJSONLReader(path)
	defer r.Close()
	if _, err := incident.Build(context.Background(), r, incident.Options{Since: t0, Until: t0.Add(-time.Second)}); err != incident.ErrRange {
		t.Fatalf("err = %v", err)
	}
	rep, err := incident.Build(context.Background(), r, incident.Options{Since: t0.Add(time.Hour)})
	if err != nil || rep.FirstSeq != 0 || len(rep.Actions) != 0 || rep.Before.Requests != 0 {
		t.Fatalf("empty window: %+v %v", rep, err)
	}
	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "not contained in this window") {
		t.Fatalf("empty report: %v\n%s", err, md.String())
	}
}
