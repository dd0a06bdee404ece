package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// routedVenue sends paths below /echo/futures/ to another host, as
// Binance sends /fapi/ to fapi.binance.com.
type routedVenue struct {
	*testVenue
	other string
}

func (v *routedVenue) UpstreamHost(baseHost, escapedPath string) string {
	if strings.HasPrefix(escapedPath, "/echo/futures/") {
		return v.other
	}
	return ""
}

func (v *routedVenue) UpstreamHosts(string) []string { return []string{v.other} }

var _ venue.HostRouter = (*routedVenue)(nil)

// TestHostRouter: a venue.HostRouter picks the upstream host per path;
// the base URL's path prefix and the signing stay the same, and a host
// outside the transport's allowlist is never dialled.
func TestHostRouter(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir()+"/keystile.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	spot, futures := newRecorder(t), newRecorder(t)
	build := func(hosts []string) *gateway.Gateway {
		tr, err := upstream.New(upstream.Options{Hosts: hosts, RootCAs: spot.pool()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.CloseIdleConnections)
		base, _ := url.Parse("https://" + spot.host() + "/base")
		impl := &routedVenue{testVenue: &testVenue{table: testTable(), key: secret.FromString(canary)}, other: futures.host()}
		gw, err := gateway.New(gateway.Options{Tokens: tokens, Venues: []gateway.Venue{{ID: "r", Impl: impl, Live: &gateway.Endpoint{BaseURL: base, Transport: tr},
			Retry: upstream.RetryPolicy{MaxAttempts: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		return gw
	}
	raw, _, err := tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"r"}, Scopes: []string{"market.read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	send := func(gw *gateway.Gateway, path string) int {
		req, _ := http.NewRequest(http.MethodGet, "/r"+path, nil)
		req.Header.Set("Authorization", "Bearer "+string(raw.Reveal()))
		req.RemoteAddr = "127.0.0.1:1"
		w := &recordingWriter{header: http.Header{}}
		gw.ServeHTTP(w, req)
		return w.status
	}
	gw := build([]string{spot.host(), futures.host()})
	if st := send(gw, "/echo/spot"); st != http.StatusOK {
		t.Fatalf("spot: %d", st)
	}
	if st := send(gw, "/echo/futures/x"); st != http.StatusOK {
		t.Fatalf("futures: %d", st)
	}
	if got := spot.requests(); len(got) != 1 || got[0].Path != "/base/echo/spot" || got[0].Header.Get(hdrKey) == "" {
		t.Errorf("spot host received %+v", got)
	}
	if got := futures.requests(); len(got) != 1 || got[0].Path != "/base/echo/futures/x" || got[0].Header.Get(hdrKey) == "" {
		t.Errorf("futures host received %+v", got)
	}
	// Without the futures host in the allowlist, nothing is dialled.
	gw = build([]string{spot.host()})
	if st := send(gw, "/echo/futures/y"); st/100 != 5 {
		t.Errorf("futures host outside the allowlist: %d", st)
	}
	if n := futures.count(); n != 1 {
		t.Errorf("the futures host received %d requests", n)
	}
}

// recordingWriter is a minimal http.ResponseWriter.
type recordingWriter struct {
	header http.Header
	status int
}

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
func (w *recordingWriter) WriteHeader(s int) { w.status = s }
