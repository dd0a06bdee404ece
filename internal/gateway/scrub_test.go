package gateway_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// Canary credential of the stamping venue. The key is sent in a header; the
// secret never leaves keystile (only its HMAC does); the passphrase is
// numeric, so an echo of it can be a bare JSON number.
const (
	stampKey        = "CANARY-scrub/key-0123456789abcdef" // #nosec G101 -- test canary
	stampSecret     = "CANARY-scrub-hmac-secret-fedcba9876543210"
	stampPassphrase = "8675309123456"
	// Non-secret values the venue sets, as real venues do.
	stampMillis = "1700000000000"            // Bybit X-BAPI-TIMESTAMP
	stampISO    = "2023-11-14T22:13:20.000Z" // OKX OK-ACCESS-TIMESTAMP
	stampNonce  = "1700000000000123"
	stampWindow = "5000"
)

// Headers of the stamping venue.
const (
	hdrStampKey   = "X-Stamp-Key"
	hdrStampSign  = "X-Stamp-Sign"
	hdrStampPass  = "X-Stamp-Passphrase"
	hdrStampTS    = "X-Stamp-Timestamp"
	hdrStampISO   = "X-Stamp-Iso-Time"
	hdrStampNonce = "X-Stamp-Nonce"
	hdrStampRecv  = "X-Stamp-Recv-Window"
)

// stampVenue signs like Bybit/OKX: key, HMAC signature and passphrase
// (secret) next to timestamps, a nonce and a receive window (public,
// declared with venue.PublicHeaders).
type stampVenue struct{}

func stampSignature() string {
	m := hmac.New(sha256.New, []byte(stampSecret))
	m.Write([]byte(stampMillis + stampKey))
	return hex.EncodeToString(m.Sum(nil))
}

func (stampVenue) Classify(r *venue.Request) (string, bool) {
	return testTable().Lookup(r.Method, r.Path)
}

func (stampVenue) Authenticate(_ context.Context, out *http.Request, _ []byte) error {
	out.Header.Set(hdrStampKey, stampKey)
	out.Header.Set(hdrStampSign, stampSignature())
	out.Header.Set(hdrStampPass, stampPassphrase)
	out.Header.Set(hdrStampTS, stampMillis)
	out.Header.Set(hdrStampISO, stampISO)
	out.Header.Set(hdrStampNonce, stampNonce)
	out.Header.Set(hdrStampRecv, stampWindow)
	return nil
}

func (stampVenue) CredentialHeaders() []string {
	return []string{hdrStampKey, hdrStampSign, hdrStampPass, hdrStampTS, hdrStampISO, hdrStampNonce, hdrStampRecv}
}

func (stampVenue) PublicHeaders() []string {
	return []string{hdrStampTS, hdrStampISO, hdrStampNonce, hdrStampRecv}
}

var (
	_ venue.Venue         = stampVenue{}
	_ venue.PublicHeaders = stampVenue{}
)

// stampGateway is a gateway serving stampVenue as "s" in front of a real
// TLS upstream running answer; with scrub the vault's Redactor (holding the
// credential fields, as app wires it) is set.
func stampGateway(t *testing.T, scrub bool, answer http.HandlerFunc) (front, tok string, client *http.Client) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	up := newRecorder(t)
	up.handle(answer)
	tr, err := upstream.New(upstream.Options{Hosts: []string{up.host()}, RootCAs: up.pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	base, _ := url.Parse("https://" + up.host() + "/pfx")
	o := gateway.Options{Tokens: tokens, Venues: []gateway.Venue{{ID: "s", Impl: stampVenue{},
		Live: &gateway.Endpoint{BaseURL: base, Transport: tr}, Retry: upstream.RetryPolicy{MaxAttempts: 1}}}}
	if scrub {
		red := logging.NewRedactor()
		for _, v := range []string{stampKey, stampSecret, stampPassphrase} {
			red.Register(secret.FromString(v))
		}
		o.Scrubber = red
	}
	gw, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gw)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	raw, _, err := tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"s"}, Scopes: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	client = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return srv.URL, string(raw.Reveal()), client
}

// fragLen is the documented fragment threshold (logging.FragmentLen): a
// secret of 24+ bytes leaks through any run of half of it, at most 16 bytes.
func fragLen(n int) int {
	if n < 24 {
		return n
	}
	return min(16, (n+1)/2)
}

// jsonEscapeAll writes every byte of s as a \u00XX escape.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, `\u%04x`, s[i])
	}
	return b.String()
}

// secretForms are the echoes of a secret value a venue might produce: the
// JSON string content as it appears in the raw answer.
func secretForms(v string) map[string]string {
	forms := map[string]string{
		"raw":       v,
		"u-escaped": jsonEscapeAll(v),
		"u-first":   `\u00` + hex.EncodeToString([]byte(v[:1])) + v[1:],
		"slash":     strings.ReplaceAll(v, "/", `\/`),
		"upper":     strings.ToUpper(v),
		"lower":     strings.ToLower(v),
	}
	if f := fragLen(len(v)); f < len(v) {
		forms["prefix"] = v[:f]
		forms["suffix"] = v[len(v)-f:]
		forms["upper-middle"] = strings.ToUpper(v[len(v)/4 : len(v)/4+f])
	}
	return forms
}

// leaks returns what of a secret value s holds: the value or any run of
// logging.FragmentLen of it, ignoring case.
func leaks(s string, values ...string) []string {
	ls := strings.ToLower(s)
	var out []string
	for _, v := range values {
		lv := strings.ToLower(v)
		f := fragLen(len(lv))
		for j := 0; j+f <= len(lv); j++ {
			if strings.Contains(ls, lv[j:j+f]) {
				out = append(out, fmt.Sprintf("%.6s…[%d:%d]", v, j, j+f))
				break
			}
		}
	}
	return out
}

// TestScrubKeepsEchoedTimestamps: a venue that echoes the timestamp, nonce
// and receive window keystile signed with (Bybit's "time", OKX's "ts")
// gets its answer through as valid JSON with those values and the order id
// intact; echoes of the key, the signature, the passphrase and the secret
// are scrubbed in raw, \u-escaped, \/-escaped, case-changed and truncated
// forms — in the body and in headers, with and without the Redactor.
func TestScrubKeepsEchoedTimestamps(t *testing.T) {
	sig := stampSignature()
	for _, scrub := range []bool{true, false} {
		t.Run(fmt.Sprintf("redactor=%v", scrub), func(t *testing.T) {
			secrets := []string{stampKey, sig, stampPassphrase}
			if scrub {
				secrets = append(secrets, stampSecret) // only the Redactor knows it
			}
			var echo strings.Builder
			for _, s := range secrets {
				for name, form := range secretForms(s) {
					if s == stampPassphrase && name != "raw" {
						continue
					}
					fmt.Fprintf(&echo, `,"%.8s-%s":"%s"`, s, name, form)
				}
			}
			front, tok, client := stampGateway(t, scrub, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Echo-Timestamp", r.Header.Get(hdrStampTS))
				w.Header().Set("X-Echo-Key", strings.ToUpper(r.Header.Get(hdrStampKey)))
				w.Header().Set("X-Echo-Sign", r.Header.Get(hdrStampSign)[:40])
				_, _ = fmt.Fprintf(w, `{"retCode":0,"result":{"orderId":"ord-7f3a","orderLinkId":"bot-1","createdTime":"%s"},`+
					`"time":%s,"ts":"%s","iso":"%s","nonce":%s,"recvWindow":"%s","passphrase":%s%s}`,
					r.Header.Get(hdrStampTS), r.Header.Get(hdrStampTS), r.Header.Get(hdrStampTS), r.Header.Get(hdrStampISO),
					r.Header.Get(hdrStampNonce), r.Header.Get(hdrStampRecv), r.Header.Get(hdrStampPass), echo.String())
			})
			req, _ := http.NewRequest(http.MethodPost, front+"/s/api/order", strings.NewReader(`{"symbol":"BTCUSDT"}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got struct {
				Result struct {
					OrderID, OrderLinkID, CreatedTime string
				}
				Time       json.Number
				TS, ISO    string
				Nonce      json.Number
				RecvWindow string
				Passphrase string
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Errorf("the answer is no longer JSON (%v): %s", err, body)
			}
			if got.Result.OrderID != "ord-7f3a" || got.Result.OrderLinkID != "bot-1" || got.Result.CreatedTime != stampMillis {
				t.Errorf("order fields rewritten: %+v", got.Result)
			}
			if got.Time.String() != stampMillis || got.TS != stampMillis || got.ISO != stampISO ||
				got.Nonce.String() != stampNonce || got.RecvWindow != stampWindow {
				t.Errorf("timestamps rewritten: time=%s ts=%s iso=%s nonce=%s recv=%s", got.Time, got.TS, got.ISO, got.Nonce, got.RecvWindow)
			}
			if got.Passphrase != "REDACTED" {
				t.Errorf("numeric passphrase echo: %q, want the string REDACTED", got.Passphrase)
			}
			if h := resp.Header.Get("X-Echo-Timestamp"); h != stampMillis {
				t.Errorf("timestamp header rewritten: %q", h)
			}
			// Decode the whole answer: escapes are undone, so an escaped
			// echo that survived would show here.
			var all any
			_ = json.Unmarshal(body, &all)
			decoded, _ := json.Marshal(all)
			var hdrs strings.Builder
			_ = resp.Header.Write(&hdrs)
			for where, s := range map[string]string{"raw body": string(body), "decoded body": unescapeHTML(string(decoded)), "headers": hdrs.String()} {
				if l := leaks(s, secrets...); len(l) > 0 {
					t.Errorf("%s leaks %v:\n%s", where, l, s)
				}
			}
		})
	}
}

// unescapeHTML undoes json.Marshal's \u003c-style escapes of <, > and &.
func unescapeHTML(s string) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(s)
}

// TestScrubPlainAnswer: a non-JSON answer gets a plain replacement; the
// timestamp stays.
func TestScrubPlainAnswer(t *testing.T) {
	front, tok, client := stampGateway(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintf(w, "ts=%s key=%s sign=%s", r.Header.Get(hdrStampTS), strings.ToUpper(r.Header.Get(hdrStampKey)),
			r.Header.Get(hdrStampSign)[:20])
	})
	req, _ := http.NewRequest(http.MethodGet, front+"/s/api/account", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if want := "ts=" + stampMillis + " key=REDACTED sign=REDACTED"; string(body) != want {
		t.Errorf("got %q, want %q", body, want)
	}
}
