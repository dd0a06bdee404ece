package token_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

// clock is an injectable, race-safe test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	db    *sqlite.DB
	path  string
	clock *clock
	logs  *bytes.Buffer
	logMu sync.Mutex
	svc   *token.Service
}

func openDB(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "keystile.db"), clock: newClock(), logs: &bytes.Buffer{}}
	e.db = openDB(t, e.path)
	e.svc = e.service(t, e.db)
	return e
}

// service builds a Service on db with the env's clock and log buffer.
func (e *env) service(t testing.TB, db *sqlite.DB) *token.Service {
	t.Helper()
	svc, err := token.New(context.Background(), token.Options{
		Store: db.Tokens(), MaxTTL: 720 * time.Hour, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{mu: &e.logMu, w: e.logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) create(t testing.TB, req token.CreateRequest) (string, *token.Token) {
	t.Helper()
	if req.Name == "" {
		req.Name = "bot-1"
	}
	if req.Venues == nil {
		req.Venues = []string{"binance"}
	}
	raw, tok, err := e.svc.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw.Reveal()), tok
}

var live = token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("127.0.0.1")}

func TestVerifyRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// prep creates what the case needs and returns the token to
		// verify and the request.
		prep func(t *testing.T, e *env) (string, token.VerifyRequest)
		want error
	}{
		{"valid", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{})
			return raw, live
		}, nil},
		{"wrong checksum", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{})
			last := raw[len(raw)-1]
			repl := byte('0')
			if last == '0' {
				repl = '1'
			}
			return raw[:len(raw)-1] + string(repl), live
		}, token.ErrMalformed},
		{"not a token", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			return "Bearer hello", live
		}, token.ErrMalformed},
		{"unknown", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			other := newEnv(t)
			raw, _ := other.create(t, token.CreateRequest{})
			return raw, live
		}, token.ErrUnknown},
		{"expired", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{TTL: time.Hour})
			e.clock.Advance(time.Hour)
			return raw, live
		}, token.ErrExpired},
		{"just before expiry", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{TTL: time.Hour})
			e.clock.Advance(time.Hour - time.Nanosecond)
			return raw, live
		}, nil},
		{"revoked", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, tok := e.create(t, token.CreateRequest{})
			if err := e.svc.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			return raw, live
		}, token.ErrRevoked},
		{"expired beats revoked", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, tok := e.create(t, token.CreateRequest{TTL: time.Minute})
			if err := e.svc.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour)
			return raw, live
		}, token.ErrExpired},
		{"frozen", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, tok := e.create(t, token.CreateRequest{})
			if err := e.svc.Freeze(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			return raw, live
		}, token.ErrFrozen},
		{"frozen then unfrozen", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, tok := e.create(t, token.CreateRequest{})
			if err := e.svc.Freeze(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Verify(ctx, raw, live); !errors.Is(err, token.ErrFrozen) {
				t.Fatalf("while frozen: %v", err)
			}
			if err := e.svc.Unfreeze(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			return raw, live
		}, nil},
		{"wrong venue", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{Venues: []string{"kraken"}})
			return raw, live
		}, token.ErrVenue},
		{"empty venue", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{})
			return raw, token.VerifyRequest{Source: live.Source}
		}, token.ErrVenue},
		{"any venue (POST /-/kill)", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{Venues: []string{"kraken"}, Test: true})
			return raw, token.VerifyRequest{AnyVenue: true, Source: live.Source}
		}, nil},
		{"any venue still checks the source", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
			return raw, token.VerifyRequest{AnyVenue: true, Source: netip.MustParseAddr("11.0.0.1")}
		}, token.ErrSource},
		{"any venue still checks revocation", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, tok := e.create(t, token.CreateRequest{})
			if err := e.svc.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			return raw, token.VerifyRequest{AnyVenue: true, Source: live.Source}
		}, token.ErrRevoked},
		{"second venue", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{Venues: []string{"kraken", "binance"}})
			return raw, live
		}, nil},
		{"v4 source outside", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
			return raw, token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("11.0.0.1")}
		}, token.ErrSource},
		{"v4 source inside", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
			return raw, token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("10.1.2.3")}
		}, nil},
		{"v4-mapped v6 source inside v4 prefix", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
			return raw, token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("::ffff:10.1.2.3")}
		}, nil},
		{"v6 source outside", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}})
			return raw, token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("2001:db9::1")}
		}, token.ErrSource},
		{"v6 source inside", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}})
			return raw, token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("2001:db8::42")}
		}, nil},
		{"v4 source against v6 prefix", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("::/0")}})
			return raw, live
		}, token.ErrSource},
		{"no source with CIDRs", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
			return raw, token.VerifyRequest{Venue: "binance"}
		}, token.ErrSource},
		{"test token against live endpoint", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{Test: true})
			return raw, live
		}, token.ErrEnvironment},
		{"live token against test endpoint", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{})
			return raw, token.VerifyRequest{Venue: "binance", Source: live.Source, TestEndpoint: true}
		}, token.ErrEnvironment},
		{"test token against test endpoint", func(t *testing.T, e *env) (string, token.VerifyRequest) {
			raw, _ := e.create(t, token.CreateRequest{Test: true})
			if !strings.HasPrefix(raw, token.PrefixTest) {
				t.Fatalf("test token prefix: %.9s", raw)
			}
			return raw, token.VerifyRequest{Venue: "binance", Source: live.Source, TestEndpoint: true}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			raw, req := tt.prep(t, e)
			tok, err := e.svc.Verify(ctx, raw, req)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && (tok == nil || tok.ID == "") {
				t.Fatal("no token on success")
			}
			if err != nil {
				if tok != nil {
					t.Fatal("token returned with an error")
				}
				if len(raw) > 20 && strings.Contains(err.Error(), raw[9:20]) {
					t.Fatal("error echoes the token")
				}
				var re *token.RefusedError
				known := !errors.Is(err, token.ErrMalformed) && !errors.Is(err, token.ErrUnknown)
				if known != errors.As(err, &re) {
					t.Fatalf("RefusedError iff known token: %v", err)
				}
			}
			assertNoLeak(t, e, raw)
		})
	}
}

// assertNoLeak checks that the token appears in neither the logs nor the
// database files.
func assertNoLeak(t *testing.T, e *env, raw string) {
	t.Helper()
	e.logMu.Lock()
	logs := e.logs.String()
	e.logMu.Unlock()
	body := raw
	if len(raw) > 20 {
		body = raw[9:52]
	}
	if strings.Contains(logs, body) {
		t.Fatal("token in logs")
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.path + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(body)) {
			t.Fatalf("token body in %s", filepath.Base(e.path+suffix))
		}
	}
}

func TestRevokeRefusedOnNextVerify(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	raw, tok := e.create(t, token.CreateRequest{})
	if _, err := e.svc.Verify(ctx, raw, live); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Verify(ctx, raw, live)
	var re *token.RefusedError
	if !errors.Is(err, token.ErrRevoked) || !errors.As(err, &re) || re.ID != tok.ID {
		t.Fatalf("after revoke: %v", err)
	}
	// Revoking again is a no-op keeping the first time.
	first, _ := e.svc.Get(ctx, tok.ID)
	e.clock.Advance(time.Minute)
	if err := e.svc.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	again, _ := e.svc.Get(ctx, tok.ID)
	if !again.RevokedAt.Equal(first.RevokedAt) {
		t.Fatal("second revoke moved RevokedAt")
	}
	if err := e.svc.Revoke(ctx, "tok_nosuchtoken"); !errors.Is(err, token.ErrNotFound) {
		t.Fatalf("revoke unknown id: %v", err)
	}
}

func TestRotateWithGrace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	oldRaw, old := e.create(t, token.CreateRequest{Name: "rot", Policy: "p1", Venues: []string{"binance", "kraken"},
		Scopes: []string{"market.read"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, TTL: 48 * time.Hour})
	e.clock.Advance(time.Hour)
	newSecret, succ, err := e.svc.Rotate(ctx, old.ID, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	newRaw := string(newSecret.Reveal())
	if newRaw == oldRaw || succ.ID == old.ID {
		t.Fatal("rotation reused the secret or id")
	}
	if succ.Name != "rot" || succ.Policy != "p1" || len(succ.Venues) != 2 || succ.Scopes[0] != "market.read" ||
		succ.CIDRs[0] != old.CIDRs[0] || succ.RotatedFrom != old.ID {
		t.Fatalf("successor attributes: %+v", succ)
	}
	if got := succ.ExpiresAt.Sub(succ.CreatedAt); got != 48*time.Hour {
		t.Fatalf("successor lifetime %s", got)
	}
	oldNow, _ := e.svc.Get(ctx, old.ID)
	if oldNow.RotatedTo != succ.ID || !oldNow.GraceUntil.Equal(e.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("old after rotate: %+v", oldNow)
	}
	// During grace both work.
	e.clock.Advance(10*time.Minute - time.Second)
	for name, raw := range map[string]string{"old": oldRaw, "new": newRaw} {
		if _, err := e.svc.Verify(ctx, raw, live); err != nil {
			t.Fatalf("%s during grace: %v", name, err)
		}
	}
	// After grace only the new one.
	e.clock.Advance(time.Second)
	if _, err := e.svc.Verify(ctx, oldRaw, live); !errors.Is(err, token.ErrExpired) {
		t.Fatalf("old after grace: %v", err)
	}
	if _, err := e.svc.Verify(ctx, newRaw, live); err != nil {
		t.Fatalf("new after grace: %v", err)
	}
	// The old one cannot be rotated again; the new one can, with grace 0.
	if _, _, err := e.svc.Rotate(ctx, old.ID, 0); !errors.Is(err, token.ErrRotated) {
		t.Fatalf("rotate old again: %v", err)
	}
	_, third, err := e.svc.Rotate(ctx, succ.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Verify(ctx, newRaw, live); !errors.Is(err, token.ErrExpired) {
		t.Fatalf("grace 0: %v", err)
	}
	// Revoking the third does not touch the others' records.
	if err := e.svc.Revoke(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	if s, _ := e.svc.Get(ctx, succ.ID); !s.RevokedAt.IsZero() {
		t.Fatal("revoke cascaded to predecessor")
	}
	// Frozen, revoked, unknown tokens are not rotated.
	_, frozen := e.create(t, token.CreateRequest{})
	if err := e.svc.Freeze(ctx, frozen.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Rotate(ctx, frozen.ID, time.Minute); !errors.Is(err, token.ErrFrozen) {
		t.Fatalf("rotate frozen: %v", err)
	}
	if _, _, err := e.svc.Rotate(ctx, third.ID, time.Minute); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("rotate revoked: %v", err)
	}
	if _, _, err := e.svc.Rotate(ctx, "tok_missing000", time.Minute); !errors.Is(err, token.ErrNotFound) {
		t.Fatalf("rotate unknown: %v", err)
	}
	if _, _, err := e.svc.Rotate(ctx, frozen.ID, -time.Second); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("negative grace: %v", err)
	}
	assertNoLeak(t, e, oldRaw)
	assertNoLeak(t, e, newRaw)
}

func TestRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	rawA, a := e.create(t, token.CreateRequest{Name: "a", Test: true, CIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/48")}})
	rawB, b := e.create(t, token.CreateRequest{Name: "b", Scopes: []string{"*.read", "wallet.withdraw"}})
	_, c := e.create(t, token.CreateRequest{Name: "c"})
	rawD, d := e.create(t, token.CreateRequest{Name: "d"})
	if _, err := e.svc.Verify(ctx, rawB, live); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Freeze(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, succ, err := e.svc.Rotate(ctx, a.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := e.svc.List(ctx)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openDB(t, e.path)
	svc2 := e.service(t, db2)
	after, err := svc2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || len(after) != 5 {
		t.Fatalf("%d tokens after restart, %d before", len(after), len(before))
	}
	for i := range before {
		x, y := before[i], after[i]
		if x.ID != y.ID || x.Name != y.Name || x.Test != y.Test || !x.CreatedAt.Equal(y.CreatedAt) ||
			!x.ExpiresAt.Equal(y.ExpiresAt) || !x.LastUsedAt.Equal(y.LastUsedAt) || !x.RevokedAt.Equal(y.RevokedAt) ||
			!x.FrozenAt.Equal(y.FrozenAt) || !x.GraceUntil.Equal(y.GraceUntil) || x.RotatedFrom != y.RotatedFrom ||
			x.RotatedTo != y.RotatedTo || strings.Join(x.Scopes, ",") != strings.Join(y.Scopes, ",") ||
			strings.Join(x.Venues, ",") != strings.Join(y.Venues, ",") || len(x.CIDRs) != len(y.CIDRs) {
			t.Fatalf("token %d differs after restart:\n%+v\n%+v", i, x, y)
		}
		for j := range x.CIDRs {
			if x.CIDRs[j] != y.CIDRs[j] {
				t.Fatalf("cidr differs: %s %s", x.CIDRs[j], y.CIDRs[j])
			}
		}
	}
	if got, _ := svc2.Get(ctx, b.ID); got.LastUsedAt.IsZero() {
		t.Fatal("last use lost")
	}
	if got, _ := svc2.Get(ctx, a.ID); got.RotatedTo != succ.ID {
		t.Fatal("rotation link lost")
	}
	testReq := token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("2001:db8::1"), TestEndpoint: true}
	if _, err := svc2.Verify(ctx, rawA, testReq); err != nil {
		t.Fatalf("old token in grace after restart: %v", err)
	}
	if tok, err := svc2.Verify(ctx, rawB, live); err != nil || !tok.Allows("wallet.withdraw") || tok.Allows("wallet.transfer") {
		t.Fatalf("b after restart: %v", err)
	}
	if _, err := svc2.Verify(ctx, rawD, live); !errors.Is(err, token.ErrFrozen) {
		t.Fatalf("frozen after restart: %v", err)
	}
	for _, raw := range []string{rawA, rawB, rawD} {
		assertNoLeak(t, e, raw)
	}
}

func TestReloadSeesOtherReplica(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	other := e.service(t, e.db) // a second replica on the same store
	raw, tok := e.create(t, token.CreateRequest{})
	if _, err := other.Verify(ctx, raw, live); !errors.Is(err, token.ErrUnknown) {
		t.Fatalf("before reload: %v", err)
	}
	if err := other.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, raw, live); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	if err := e.svc.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := other.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, raw, live); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked elsewhere: %v", err)
	}
}

func TestCreateValidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tests := []struct {
		name string
		req  token.CreateRequest
	}{
		{"no name", token.CreateRequest{Venues: []string{"binance"}}},
		{"control char in name", token.CreateRequest{Name: "a\nb", Venues: []string{"binance"}}},
		{"long name", token.CreateRequest{Name: strings.Repeat("n", 129), Venues: []string{"binance"}}},
		{"no venue", token.CreateRequest{Name: "x"}},
		{"bad venue", token.CreateRequest{Name: "x", Venues: []string{"Binance"}}},
		{"bad scope", token.CreateRequest{Name: "x", Venues: []string{"binance"}, Scopes: []string{"order.pl*"}}},
		{"wallet glob", token.CreateRequest{Name: "x", Venues: []string{"binance"}, Scopes: []string{"wallet.*"}}},
		{"invalid prefix", token.CreateRequest{Name: "x", Venues: []string{"binance"}, CIDRs: []netip.Prefix{{}}}},
		{"negative ttl", token.CreateRequest{Name: "x", Venues: []string{"binance"}, TTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, tok, err := e.svc.Create(ctx, tt.req)
			if !errors.Is(err, token.ErrInvalid) || tok != nil || !raw.IsZero() {
				t.Fatalf("Create = %v, want ErrInvalid", err)
			}
		})
	}
	if l, _ := e.svc.List(ctx); len(l) != 0 {
		t.Fatalf("%d tokens after refused creates", len(l))
	}
}

func TestCreateDefaultsAndTTL(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"default", 0, 24 * time.Hour},
		{"explicit", 2 * time.Hour, 2 * time.Hour},
		{"at max", 720 * time.Hour, 720 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tok := e.create(t, token.CreateRequest{TTL: tt.ttl, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")},
				Venues: []string{"kraken", "binance", "kraken"}})
			if got := tok.ExpiresAt.Sub(tok.CreatedAt); got != tt.want {
				t.Fatalf("lifetime %s, want %s", got, tt.want)
			}
			if strings.Join(tok.Scopes, ",") != "market.read,account.read,order.*" {
				t.Fatalf("default scopes %v", tok.Scopes)
			}
			if strings.Join(tok.Venues, ",") != "binance,kraken" || tok.CIDRs[0].String() != "10.0.0.0/8" {
				t.Fatalf("normalisation: %v %v", tok.Venues, tok.CIDRs)
			}
			if !strings.HasPrefix(string(tok.ID), "tok_") || len(tok.ID) != 14 {
				t.Fatalf("id %q", tok.ID)
			}
		})
	}
	t.Run("options", func(t *testing.T) {
		db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
		for name, o := range map[string]token.Options{
			"nil store":       {},
			"default > max":   {Store: db.Tokens(), DefaultTTL: 48 * time.Hour, MaxTTL: time.Hour},
			"negative max":    {Store: db.Tokens(), MaxTTL: -time.Hour},
			"default > 720 h": {Store: db.Tokens(), DefaultTTL: 1000 * time.Hour},
		} {
			if _, err := token.New(ctx, o); !errors.Is(err, token.ErrInvalid) {
				t.Errorf("%s: New = %v", name, err)
			}
		}
		svc, err := token.New(ctx, token.Options{Store: db.Tokens(), DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		_, tok, err := svc.Create(ctx, token.CreateRequest{Name: "x", Venues: []string{"v"}, TTL: 2 * time.Hour})
		if err != nil || tok.ExpiresAt.Sub(tok.CreatedAt) != 2*time.Hour {
			t.Fatalf("custom max: %v %v", err, tok)
		}
	})
}

func TestSecretIsRedacted(t *testing.T) {
	e := newEnv(t)
	raw, _, err := e.svc.Create(context.Background(), token.CreateRequest{Name: "x", Venues: []string{"binance"}})
	if err != nil {
		t.Fatal(err)
	}
	if raw.String() != secret.Redacted || !token.LooksValid(string(raw.Reveal())) {
		t.Fatal("Create must return a redacting secret holding a valid token")
	}
}

func TestUsageFlush(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	raw, tok := e.create(t, token.CreateRequest{})
	if err := e.svc.FlushUsage(ctx); err != nil { // nothing to flush
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.svc.Verify(ctx, raw, live); err != nil {
		t.Fatal(err)
	}
	got, _ := e.svc.Get(ctx, tok.ID)
	if !got.LastUsedAt.Equal(e.clock.Now()) {
		t.Fatalf("LastUsedAt %v, want %v", got.LastUsedAt, e.clock.Now())
	}
	if err := e.svc.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := e.db.Tokens().All(ctx)
	if err != nil || len(recs) != 1 || !recs[0].LastUsedAt.Equal(e.clock.Now()) {
		t.Fatalf("stored LastUsedAt: %v %+v", err, recs)
	}
}

func TestConcurrentVerifyRevoke(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	const n = 8
	raws := make([]string, n)
	ids := make([]token.ID, n)
	for i := range n {
		r, tok := e.create(t, token.CreateRequest{})
		raws[i], ids[i] = r, tok.ID
	}
	var revoked [n]atomic.Bool
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (k + g) % n
				// Read the flag first: once Revoke has returned, Verify
				// must refuse.
				wasRevoked := revoked[i].Load()
				_, err := e.svc.Verify(ctx, raws[i], live)
				if wasRevoked && !errors.Is(err, token.ErrRevoked) {
					t.Errorf("token %d verified after its Revoke returned: %v", i, err)
					return
				}
				if err != nil && !errors.Is(err, token.ErrRevoked) {
					t.Errorf("unexpected %v", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := e.svc.Revoke(ctx, ids[i]); err != nil {
				t.Error(err)
			}
			revoked[i].Store(true)
			if _, err := e.svc.List(ctx); err != nil {
				t.Error(err)
			}
			if err := e.svc.FlushUsage(ctx); err != nil {
				t.Error(err)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for i := range n {
		if _, err := e.svc.Verify(ctx, raws[i], live); !errors.Is(err, token.ErrRevoked) {
			t.Fatalf("token %d: %v", i, err)
		}
	}
}
