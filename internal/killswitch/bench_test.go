package killswitch_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
)

// The switch's cost on the request path, as ratios within one run:
// BenchmarkVerify/bare vs /guarded (the token check), and
// BenchmarkRoundTrip/bare vs /gated (the gate before the network, over a
// transport that answers at once), each with some trips engaged for other
// tokens and venues so the maps are not empty.

func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	db, _ := openDB(b)
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		b.Fatal(err)
	}
	raw, _, err := tokens.Create(ctx, token.CreateRequest{Name: "bench", Venues: []string{"binance"}})
	if err != nil {
		b.Fatal(err)
	}
	s := newSwitch(b, db.Trips(), nil)
	for _, v := range []string{"kraken", "okx"} {
		if _, err := s.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: v, Rule: "r", Actor: "a"}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeToken, Target: "tok_other", Rule: "r", Actor: "a"}); err != nil {
		b.Fatal(err)
	}
	req := token.VerifyRequest{Venue: "binance", Source: loopback}
	rawS := string(raw.Reveal())
	for _, c := range []struct {
		name string
		v    killswitch.Verifier
	}{{"bare", tokens}, {"guarded", s.Guard(tokens)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.v.Verify(ctx, rawS, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// instant answers every request at once, without a network.
type instant struct{}

func (instant) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok"))}, nil
}

func BenchmarkRoundTrip(b *testing.B) {
	db, _ := openDB(b)
	s := newSwitch(b, db.Trips(), nil)
	if _, err := s.Engage(context.Background(), killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "kraken", Rule: "r", Actor: "a"}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", instant{}}, {"gated", s.Transport("binance", instant{})}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", "https://api.example/x", nil)
				for pb.Next() {
					resp, err := c.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					_ = resp.Body.Close()
				}
			})
		})
	}
}
