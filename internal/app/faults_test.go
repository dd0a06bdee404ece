package app_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// startHarnessWith is startHarness with a hook that edits the parsed
// configuration before the server is built: extra venues (copies of the
// generic venue with other timeouts, hosts or TLS settings) and gateway
// limits (read_header_timeout, max_header_bytes) that the generated YAML
// does not expose.
func startHarnessWith(t *testing.T, o harnessOptions, configure func(info sandbox.Info, cfg *config.Config)) *harness {
	t.Helper()
	o.Configure = configure
	return startHarness(t, o)
}

// genericCopy adds venue id to cfg as a copy of the generic sandbox venue
// (same credential, signing scheme and operations table), changed by edit.
func genericCopy(cfg *config.Config, id string, edit func(v *config.Venue)) {
	v := cfg.Venues[sandbox.VenueGeneric]
	v.Operations = append([]config.Operation(nil), v.Operations...)
	v.Hosts = append([]string(nil), v.Hosts...)
	edit(&v)
	cfg.Venues[id] = v
}

// auditLine is one audit record as the gateway emits it. Today that is the
// "gateway: request" log line of audit.LogSink; when the durable audit log
// lands, only auditRecord needs to change.
type auditLine struct {
	RequestID string `json:"request_id"`
	TokenID   string `json:"token_id"`
	Venue     string `json:"venue"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Operation string `json:"operation"`
	Decision  string `json:"decision"`
	Rule      string `json:"rule"`
	Status    int    `json:"status"`
	Upstream  int    `json:"upstream_status"`
	Error     string `json:"error"`
}

// auditRecords returns every audit record written so far.
func auditRecords(h *harness) []auditLine {
	var out []auditLine
	sc := bufio.NewScanner(strings.NewReader(h.log.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"gateway: request"`) {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
			auditLine
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "gateway: request" {
			out = append(out, rec.auditLine)
		}
	}
	return out
}

// auditRecord waits (up to 5 s: a proxied answer can reach the bot before
// the record is written) for the audit record of requestID and returns it.
func auditRecord(t *testing.T, h *harness, requestID string) auditLine {
	t.Helper()
	if requestID == "" {
		t.Fatal("audit: the answer carried no Keystile-Request-Id")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found []auditLine
		for _, r := range auditRecords(h) {
			if r.RequestID == requestID {
				found = append(found, r)
			}
		}
		if len(found) > 1 {
			t.Fatalf("audit: %d records for request %s, want 1", len(found), requestID)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit: no record for request %s", requestID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantAudit checks that the request behind resp left exactly one audit
// record with the status the bot saw, the given decision and (if not "")
// rule.
func wantAudit(t *testing.T, h *harness, resp botResponse, venueID, decision, rule string) auditLine {
	t.Helper()
	rec := auditRecord(t, h, resp.header.Get("Keystile-Request-Id"))
	if rec.Status != resp.status {
		t.Errorf("audit: status %d, the bot got %d", rec.Status, resp.status)
	}
	if rec.Decision != decision {
		t.Errorf("audit: decision %q, want %q (rule %q, error %q)", rec.Decision, decision, rec.Rule, rec.Error)
	}
	if rule != "" && rec.Rule != rule {
		t.Errorf("audit: rule %q, want %q", rec.Rule, rule)
	}
	if venueID != "" && rec.Venue != venueID {
		t.Errorf("audit: venue %q, want %q", rec.Venue, venueID)
	}
	return rec
}

// wantGatewayError checks status and error code of a gateway-made answer.
func wantGatewayError(t *testing.T, resp botResponse, status int, codes ...string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d: %.300s", resp.status, status, resp.body)
	}
	if len(codes) == 0 {
		return
	}
	for _, c := range codes {
		if resp.errorCode() == c {
			return
		}
	}
	t.Fatalf("error code %q, want one of %q: %.300s", resp.errorCode(), codes, resp.body)
}

// statsDelta is the change of a venue's counters.
type statsDelta struct{ requests, orders, authFailures, faults int64 }

func delta(before, after sandbox.Stats) statsDelta {
	return statsDelta{after.Requests - before.Requests, after.Orders - before.Orders,
		after.AuthFailures - before.AuthFailures, after.FaultsInjected - before.FaultsInjected}
}

// inject queues a fault, failing the test if the sandbox refuses it; a
// fault applying to every request is cleared when the test ends.
func inject(t *testing.T, h *harness, venueID string, f sandbox.Fault) {
	t.Helper()
	if err := h.sb.InjectFault(venueID, f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.sb.ClearFaults(venueID) })
}

// timed runs fn and fails if it took longer than limit.
func timed(t *testing.T, limit time.Duration, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	fn()
	el := time.Since(start)
	if el > limit {
		t.Errorf("took %v, want at most %v (bounded retries, no hang)", el, limit)
	}
	return el
}

// TestFaultsEndToEnd drives the sandbox's fault injection through a real
// keystile: 5xx bursts, 429 storms with Retry-After, resets before the
// venue read the body and after it acted, and slow answers past the venue's
// timeouts. For each: retries are bounded, a write is never sent twice (the
// sandbox counts), the bot gets the right status and one audit record is
// written.
func TestFaultsEndToEnd(t *testing.T) {
	const slow = "slowgen" // the generic venue with short timeouts
	h := startHarnessWith(t, harnessOptions{}, func(_ sandbox.Info, cfg *config.Config) {
		genericCopy(cfg, slow, func(v *config.Venue) {
			v.Timeouts = config.Timeouts{Connect: time.Second, TLSHandshake: time.Second, ResponseHeader: 300 * time.Millisecond, Total: 600 * time.Millisecond}
		})
	})
	var venues []string
	for _, v := range h.venues {
		venues = append(venues, v.id)
	}
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: append(venues, slow), CIDRs: []string{"127.0.0.1/32"}}).Token
	gen := e2eVenues()[4]
	if gen.id != sandbox.VenueGeneric {
		t.Fatalf("venue table changed: %s", gen.id)
	}
	const maxAttempts = 3 // retry.max_attempts in e2eConfigYAML

	// call sends r to venue id (the generic emulator serves both ids).
	call := func(t *testing.T, id string, r botRequest) botResponse {
		t.Helper()
		return h.mustCall(t, tok, id, r)
	}

	t.Run("5xx burst on a read: bounded retries, then the venue's status", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusBadGateway, Count: -1, PathPrefix: gen.read.path})
		var resp botResponse
		timed(t, 5*time.Second, func() { resp = call(t, gen.id, gen.read) })
		if resp.status != http.StatusBadGateway {
			t.Fatalf("status %d, want the venue's 502: %.200s", resp.status, resp.body)
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != maxAttempts || d.faults != maxAttempts {
			t.Errorf("venue saw %d requests (%d faulted), want exactly %d", d.requests, d.faults, maxAttempts)
		}
		rec := wantAudit(t, h, resp, gen.id, "allow", "")
		if rec.Upstream != http.StatusBadGateway {
			t.Errorf("audit: upstream status %d, want 502", rec.Upstream)
		}
	})

	t.Run("5xx burst that ends: the read succeeds", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusInternalServerError, PathPrefix: gen.read.path})
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusServiceUnavailable, Count: 1, PathPrefix: gen.read.path})
		resp := call(t, gen.id, gen.read)
		// 500 is not retryable: the venue's answer is relayed.
		if resp.status != http.StatusInternalServerError {
			t.Fatalf("status %d, want the venue's 500 relayed unretried", resp.status)
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 1 {
			t.Errorf("a 500 was retried: %d requests", d.requests)
		}
		wantAudit(t, h, resp, gen.id, "allow", "")
		resp = call(t, gen.id, gen.read) // 503 then success
		wantOK(t, gen.id, gen.read, resp)
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 3 {
			t.Errorf("venue saw %d requests, want 3 (500; 503 + retry)", d.requests)
		}
	})

	t.Run("5xx on an order: never re-sent", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusServiceUnavailable, Count: -1, PathPrefix: gen.order.path})
		resp := call(t, gen.id, gen.order)
		if resp.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want the venue's 503", resp.status)
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 1 || d.orders != 0 {
			t.Errorf("venue saw %d requests and %d orders, want 1 and 0", d.requests, d.orders)
		}
		wantAudit(t, h, resp, gen.id, "allow", "")
	})

	t.Run("429 storm with Retry-After on a read: bounded, Retry-After honoured", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultRateLimit, RetryAfter: 1, Count: -1, PathPrefix: gen.read.path})
		var resp botResponse
		el := timed(t, 8*time.Second, func() { resp = call(t, gen.id, gen.read) })
		if resp.status != http.StatusTooManyRequests {
			t.Fatalf("status %d, want the venue's 429", resp.status)
		}
		if resp.header.Get("Retry-After") == "" {
			t.Errorf("the venue's Retry-After did not reach the bot")
		}
		if el < time.Duration(maxAttempts-1)*time.Second {
			t.Errorf("answered after %v: Retry-After: 1 was not waited between %d attempts", el, maxAttempts)
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != maxAttempts {
			t.Errorf("venue saw %d requests, want %d", d.requests, maxAttempts)
		}
		wantAudit(t, h, resp, gen.id, "allow", "")
	})

	t.Run("429 with a Retry-After past max_retry_after: answered at once", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultRateLimit, RetryAfter: 600, Count: -1, PathPrefix: gen.read.path})
		var resp botResponse
		timed(t, 2*time.Second, func() { resp = call(t, gen.id, gen.read) })
		if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "600" {
			t.Fatalf("status %d Retry-After %q, want 429 and 600", resp.status, resp.header.Get("Retry-After"))
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 1 {
			t.Errorf("venue saw %d requests, want 1", d.requests)
		}
		wantAudit(t, h, resp, gen.id, "allow", "")
	})

	t.Run("429 storm on orders: each sent once", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultRateLimit, RetryAfter: 1, Count: -1, PathPrefix: gen.order.path})
		for range 5 {
			resp := call(t, gen.id, gen.order)
			if resp.status != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429", resp.status)
			}
			wantAudit(t, h, resp, gen.id, "allow", "")
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 5 || d.orders != 0 {
			t.Errorf("venue saw %d requests and %d orders, want 5 and 0", d.requests, d.orders)
		}
	})

	t.Run("reset before the body was read: a read is retried", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultReset, PathPrefix: gen.read.path})
		resp := call(t, gen.id, gen.read)
		wantOK(t, gen.id, gen.read, resp)
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 2 {
			t.Errorf("venue saw %d requests, want 2 (reset + retry)", d.requests)
		}
		wantAudit(t, h, resp, gen.id, "allow", "")
	})

	t.Run("reset before the body was read: an order is not re-sent", func(t *testing.T) {
		// keystile cannot know the venue dropped the order unread: the
		// headers had left. It must not re-send, and must say so.
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultReset, PathPrefix: gen.order.path})
		resp := call(t, gen.id, gen.order)
		wantGatewayError(t, resp, http.StatusGatewayTimeout, "outcome_unknown")
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 1 || d.orders != 0 {
			t.Errorf("venue saw %d requests and %d orders, want 1 and 0", d.requests, d.orders)
		}
		wantAudit(t, h, resp, gen.id, "error", "")
	})

	t.Run("reset after the venue acted: a read is retried", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultResetAfterRead, PathPrefix: gen.read.path})
		resp := call(t, gen.id, gen.read)
		wantOK(t, gen.id, gen.read, resp)
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 2 {
			t.Errorf("venue saw %d requests, want 2", d.requests)
		}
	})

	t.Run("reset storm on reads: bounded, 502", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultReset, Count: -1, PathPrefix: gen.read.path})
		var resp botResponse
		timed(t, 5*time.Second, func() { resp = call(t, gen.id, gen.read) })
		wantGatewayError(t, resp, http.StatusBadGateway, "upstream_error")
		// Go's http.Transport itself re-sends a read once when a reused
		// keep-alive connection dies, so the first attempt may cost two.
		if d := delta(before, h.sb.Stats(gen.id)); d.requests < maxAttempts || d.requests > maxAttempts+1 {
			t.Errorf("venue saw %d requests, want %d (+1 for a dead pooled connection)", d.requests, maxAttempts)
		}
		wantAudit(t, h, resp, gen.id, "error", "")
	})

	t.Run("slow answer past response_header on a read: bounded, 504", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultDelay, Delay: sandbox.Duration(3 * time.Second), Count: -1, PathPrefix: gen.read.path})
		var resp botResponse
		// 3 attempts x 300 ms + backoffs <= 200 ms each.
		timed(t, 3*time.Second, func() { resp = call(t, slow, gen.read) })
		wantGatewayError(t, resp, http.StatusGatewayTimeout, "upstream_timeout")
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != maxAttempts {
			t.Errorf("venue saw %d requests, want %d", d.requests, maxAttempts)
		}
		wantAudit(t, h, resp, slow, "error", "")
	})

	t.Run("slow answer past response_header on an order: sent once, outcome unknown", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		inject(t, h, gen.id, sandbox.Fault{Kind: sandbox.FaultDelay, Delay: sandbox.Duration(time.Second), PathPrefix: gen.order.path})
		var resp botResponse
		timed(t, 2*time.Second, func() { resp = call(t, slow, gen.order) })
		wantGatewayError(t, resp, http.StatusGatewayTimeout, "outcome_unknown")
		wantAudit(t, h, resp, slow, "error", "")
		// The sandbox finishes its delay and may still place the order
		// (a real venue would): it must be there at most once, and the
		// next order must not be merged with it.
		time.Sleep(1200 * time.Millisecond)
		d := delta(before, h.sb.Stats(gen.id))
		if d.requests != 1 || d.orders > 1 {
			t.Errorf("venue saw %d requests and %d orders, want 1 and at most 1", d.requests, d.orders)
		}
		wantOK(t, gen.id, gen.order, call(t, gen.id, gen.order))
		if got := delta(before, h.sb.Stats(gen.id)).orders - d.orders; got != 1 {
			t.Errorf("the next order counted %d times, want 1", got)
		}
	})

	t.Run("the gateway is healthy after the faults", func(t *testing.T) {
		wantHealthy(t, h)
		wantOK(t, gen.id, gen.read, call(t, gen.id, gen.read))
	})
}

// wantHealthy checks /-/healthz on a fresh connection.
func wantHealthy(t *testing.T, h *harness) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(h.gw + "/-/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

// TestFaultsExpiredSessionMidStream expires every venue session while a
// stream of orders is in flight (Betfair session tokens, STAPI OAuth access
// tokens): every order is answered 200 and placed exactly once, with one
// new login.
func TestFaultsExpiredSessionMidStream(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	for _, v := range []e2eVenue{e2eVenues()[2], e2eVenues()[3]} {
		t.Run(v.id, func(t *testing.T) {
			if v.id != sandbox.VenueBetfair && v.id != sandbox.VenueSTAPI {
				t.Fatalf("venue table changed: %s", v.id)
			}
			wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read)) // log in
			before := h.sb.Stats(v.id)
			const workers, perWorker = 4, 6
			var ok atomic.Int64
			var expired sync.Once
			errs := concurrently(workers, func(w int) error {
				for i := range perWorker {
					if w == 0 && i == perWorker/2 {
						expired.Do(func() {
							if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultExpireSessions}); err != nil {
								t.Error(err)
							}
						})
					}
					resp, err := h.call(tok, v.id, v.order)
					if err != nil {
						return err
					}
					if resp.status/100 != 2 {
						return fmt.Errorf("order %d/%d: status %d: %.200s", w, i, resp.status, resp.body)
					}
					ok.Add(1)
				}
				return nil
			})
			if len(errs) > 0 {
				t.Fatalf("%d workers failed, first: %v", len(errs), errs[0])
			}
			after := h.sb.Stats(v.id)
			if got := after.Orders - before.Orders; got != ok.Load() {
				t.Errorf("venue placed %d orders for %d answered 200 (duplicates or losses)", got, ok.Load())
			}
			if got := after.Logins - before.Logins; got != 1 {
				t.Errorf("%d new logins after the sessions expired, want 1", got)
			}
		})
	}
	wantHealthy(t, h)
}

// TestFaultsUnreachableVenues: a venue whose host does not resolve (.invalid,
// RFC 2606), one whose certificate is from a CA the config does not trust,
// one whose certificate names another host, one whose certificate has
// expired, and one whose answer stalls after the headers. Each gets a
// 502/504 after bounded attempts, never a hang, nothing reaches the
// sandbox, and each is audited.
func TestFaultsUnreachableVenues(t *testing.T) {
	expired := startExpiredTLSServer(t)
	stall := startStallServer(t)
	h := startHarnessWith(t, harnessOptions{}, func(info sandbox.Info, cfg *config.Config) {
		short := config.Timeouts{Connect: time.Second, TLSHandshake: time.Second, ResponseHeader: time.Second, Total: 1500 * time.Millisecond}
		genericCopy(cfg, "dnsfail", func(v *config.Venue) {
			v.BaseURL, v.Timeouts = "https://keystile-e2e-venue.invalid", short
		})
		genericCopy(cfg, "untrusted", func(v *config.Venue) {
			v.TLS.CAFile, v.Timeouts = expired.otherCA, short // a CA that did not issue the sandbox's certificate
		})
		genericCopy(cfg, "wrongname", func(v *config.Venue) {
			v.TLS.ServerName, v.Timeouts = "wrong-name.keystile.invalid", short
		})
		genericCopy(cfg, "expired", func(v *config.Venue) {
			v.BaseURL, v.TLS.CAFile, v.Timeouts = expired.url, expired.caFile, short
		})
		genericCopy(cfg, "stall", func(v *config.Venue) {
			v.BaseURL, v.Timeouts = stall.url, short
		})
	})
	ids := []string{"dnsfail", "untrusted", "wrongname", "expired", "stall"}
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: ids, CIDRs: []string{"127.0.0.1/32"}}).Token
	gen := e2eVenues()[4]
	before := h.sb.Stats(gen.id)

	for _, tc := range []struct {
		id    string
		r     botRequest
		codes []string
		// status is the answer's status: 502 unless the venue stalls.
		status int
		// attempts bounds the connections the failing venue may see (0:
		// not observable).
		attempts int64
		conns    func() int64
	}{
		{id: "dnsfail", r: gen.read, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		{id: "dnsfail", r: gen.order, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		{id: "untrusted", r: gen.read, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		{id: "untrusted", r: gen.order, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		{id: "wrongname", r: gen.read, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		{id: "wrongname", r: gen.order, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway},
		// A certificate error is final: one handshake, no retry.
		{id: "expired", r: gen.read, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway, attempts: 1, conns: expired.handshakes.Load},
		{id: "expired", r: gen.order, codes: []string{"upstream_error", "upstream_refused"}, status: http.StatusBadGateway, attempts: 1, conns: expired.handshakes.Load},
		// The venue answered 200 and its body stalled: a read is retried
		// (bounded); for a write keystile cannot know what the venue did.
		{id: "stall", r: gen.read, codes: []string{"upstream_timeout", "upstream_error"}, status: http.StatusGatewayTimeout, attempts: 3, conns: stall.requests.Load},
		{id: "stall", r: gen.order, codes: []string{"outcome_unknown"}, status: http.StatusGatewayTimeout, attempts: 1, conns: stall.requests.Load},
	} {
		t.Run(tc.id+" "+tc.r.method, func(t *testing.T) {
			var n0 int64
			if tc.conns != nil {
				n0 = tc.conns()
			}
			var resp botResponse
			timed(t, 8*time.Second, func() { resp = h.mustCall(t, tok, tc.id, tc.r) })
			// A write whose answer stalled after the venue sent its
			// status was received and maybe acted on: the bot must be
			// told outcome_unknown, never "did not answer in time".
			wantGatewayError(t, resp, tc.status, tc.codes...)
			if tc.conns != nil {
				if n := tc.conns() - n0; n < 1 || n > tc.attempts {
					t.Errorf("the venue saw %d attempts, want 1..%d", n, tc.attempts)
				}
			}
			wantAudit(t, h, resp, tc.id, "error", "")
		})
	}
	if d := delta(before, h.sb.Stats(gen.id)); d.requests != 0 {
		t.Errorf("the sandbox's generic venue saw %d requests through a venue that must fail", d.requests)
	}
	wantHealthy(t, h)
}

// expiredTLSServer is a loopback HTTPS server whose certificate expired,
// issued by its own CA.
type expiredTLSServer struct {
	url        string
	caFile     string // the CA that issued the expired certificate
	otherCA    string // an unrelated CA, for "untrusted issuer" tests
	handshakes atomic.Int64
}

func startExpiredTLSServer(t *testing.T) *expiredTLSServer {
	t.Helper()
	dir := t.TempDir()
	s := &expiredTLSServer{caFile: filepath.Join(dir, "expired-ca.pem"), otherCA: filepath.Join(dir, "other-ca.pem")}
	now := time.Now()
	ca, caKey := newCA(t, "keystile e2e expired-cert CA", s.caFile)
	_, _ = newCA(t, "keystile e2e unrelated CA", s.otherCA)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          nopLogger(),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.handshakes.Add(1)
			return &cert, nil
		}},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	s.url = "https://" + ln.Addr().String()
	return s
}

// newCA creates a self-signed CA, writes its PEM to file and returns it.
func newCA(t *testing.T, name, file string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(72 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// stallServer is a plain-HTTP loopback venue (allowed for sandbox venues)
// that answers 200 with a Content-Length, writes part of the body and then
// stalls until the client goes away.
type stallServer struct {
	url      string
	requests atomic.Int64
}

func startStallServer(t *testing.T) *stallServer {
	t.Helper()
	s := &stallServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          nopLogger(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "64")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"id":"stalled-order-1","sta`))
			_ = http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.url = "http://" + ln.Addr().String()
	return s
}

// nopLogger silences a test server's error log (TLS handshake failures
// are expected).
func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }
