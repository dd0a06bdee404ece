package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingRT counts calls into the real transport below it.
type countingRT struct {
	next  http.RoundTripper
	calls atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newRetrier(t *testing.T, next http.RoundTripper, p RetryPolicy) *Retrier {
	t.Helper()
	if p.InitialBackoff == 0 {
		p.InitialBackoff = 5 * time.Millisecond
	}
	r, err := NewRetrier(next, p)
	if err != nil {
		t.Fatalf("NewRetrier: %v", err)
	}
	return r
}

// hijackClose reads the request, then closes the connection without answering.
func hijackClose(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	c, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = c.Close()
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    RetryPolicy
		ok   bool
	}{
		{"zero", RetryPolicy{}, true},
		{"negative attempts", RetryPolicy{MaxAttempts: -1}, false},
		{"negative backoff", RetryPolicy{InitialBackoff: -1}, false},
		{"expired without refresh", RetryPolicy{SessionExpired: func(*http.Response) bool { return false }}, false},
		{"refresh without expired", RetryPolicy{RefreshSession: func(context.Context) error { return nil }}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRetrier(http.DefaultTransport, tc.p)
			if (err == nil) != tc.ok {
				t.Fatalf("NewRetrier err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := NewRetrier(nil, RetryPolicy{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("nil next: %v", err)
	}
}

func TestWriteNeverResentAfterBytesLeft(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    Options
	}{
		{"server closes after reading", hijackClose, Options{}},
		{"server hangs past header timeout", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		}, Options{ResponseHeader: 150 * time.Millisecond}},
	}
	for _, tc := range tests {
		for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				var writes atomic.Int64
				srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					writes.Add(1)
					tc.handler(w, r)
				}))
				tr := newTransport(t, srv, tc.opts)
				rt := newRetrier(t, tr, RetryPolicy{MaxAttempts: 5})
				_, err := rt.RoundTrip(mustReq(t, testCtx(t), method, srv.URL+"/order", []byte(`{"qty":"1"}`)))
				var uo *UnknownOutcomeError
				if !errors.As(err, &uo) {
					t.Fatalf("err = %v, want *UnknownOutcomeError", err)
				}
				if uo.Method != method {
					t.Fatalf("UnknownOutcomeError.Method = %q", uo.Method)
				}
				if n := writes.Load(); n != 1 {
					t.Fatalf("server saw %d requests, want exactly 1", n)
				}
			})
		}
	}
}

// Go's http.Transport re-sends a request carrying an Idempotency-Key header
// when a reused keep-alive connection dies after the write. Transport must
// prevent that for writes.
func TestIdempotencyKeyDoesNotTriggerResend(t *testing.T) {
	for _, header := range []string{"Idempotency-Key", "X-Idempotency-Key"} {
		t.Run(header, func(t *testing.T) {
			var posts atomic.Int64
			var seen atomic.Value
			srv, cl := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					_, _ = io.WriteString(w, "warm")
					return
				}
				posts.Add(1)
				seen.Store(r.Header.Get(header))
				hijackClose(w, r)
			}))
			tr := newTransport(t, srv, Options{})
			resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()

			req := mustReq(t, testCtx(t), "POST", srv.URL+"/order", []byte("qty=1"))
			req.Header.Set(header, "key-1")
			_, err = tr.RoundTrip(req)
			var uo *UnknownOutcomeError
			if !errors.As(err, &uo) {
				t.Fatalf("err = %v, want *UnknownOutcomeError", err)
			}
			if n := posts.Load(); n != 1 {
				t.Fatalf("server saw %d POSTs, want exactly 1", n)
			}
			if cl.accepts.Load() != 1 {
				t.Fatalf("want the POST on the reused connection, got %d connections", cl.accepts.Load())
			}
			if got, _ := seen.Load().(string); got != "key-1" {
				t.Fatalf("venue saw %s = %q, want key-1", header, got)
			}
			if _, ok := req.Header[header]; !ok {
				t.Fatal("caller's request header was modified")
			}
		})
	}
}

func TestWriteRetriedWhenConnectionRefused(t *testing.T) {
	// Reserve a port, then free it: the first attempt is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	var bodies []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		_, _ = io.WriteString(w, "placed")
	}))
	defer srv.Close()
	donor, _ := tlsServer(t, http.NotFoundHandler()) // httptest servers share one certificate
	tr := newTransport(t, nil, Options{Hosts: []string{addr}, RootCAs: poolFor(donor)})
	counter := &countingRT{next: tr}
	var sleeps atomic.Int64
	rt := newRetrier(t, counter, RetryPolicy{Sleep: func(ctx context.Context, d time.Duration) error {
		if sleeps.Add(1) == 1 { // the venue comes back before the retry
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			srv.Listener = l
			srv.StartTLS()
		}
		return nil
	}})
	resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "POST", "https://"+addr+"/order", []byte("qty=1")))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	if counter.calls.Load() != 2 {
		t.Fatalf("attempts = %d, want 2", counter.calls.Load())
	}
	if len(bodies) != 1 || bodies[0] != "qty=1" {
		t.Fatalf("server bodies = %q, want one replayed body", bodies)
	}
}

func TestNotRetried(t *testing.T) {
	t.Run("host not allowed is final", func(t *testing.T) {
		tr := newTransport(t, nil, Options{Hosts: []string{"api.example"}})
		c := &countingRT{next: tr}
		_, err := newRetrier(t, c, RetryPolicy{}).RoundTrip(mustReq(t, testCtx(t), "GET", "https://evil.example/", nil))
		if !errors.Is(err, ErrHostNotAllowed) || c.calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls, want ErrHostNotAllowed after 1", err, c.calls.Load())
		}
	})
	t.Run("refused before sending is final", func(t *testing.T) {
		refuse := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("kill switch: %w", ErrRefused)
		})
		c := &countingRT{next: refuse}
		_, err := newRetrier(t, c, RetryPolicy{}).RoundTrip(mustReq(t, testCtx(t), "GET", "https://api.example/", nil))
		if !errors.Is(err, ErrRefused) || c.calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls, want ErrRefused after 1", err, c.calls.Load())
		}
	})
	t.Run("bad certificate is final", func(t *testing.T) {
		srv, _ := tlsServer(t, http.NotFoundHandler())
		_, port, _ := net.SplitHostPort(hostOf(srv))
		tr := newTransport(t, srv, Options{Hosts: []string{"localhost:" + port}})
		c := &countingRT{next: tr}
		_, err := newRetrier(t, c, RetryPolicy{}).RoundTrip(mustReq(t, testCtx(t), "GET", "https://localhost:"+port, nil))
		if err == nil || c.calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls, want an error after 1", err, c.calls.Load())
		}
	})
	t.Run("write answered 503 is returned", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "POST", srv.URL, []byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || hits.Load() != 1 {
			t.Fatalf("status %d after %d hits, want 503 after 1", resp.StatusCode, hits.Load())
		}
	})
	t.Run("unreplayable body returns the response", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
		req := mustReq(t, testCtx(t), "GET", srv.URL, nil)
		req.Body = io.NopCloser(strings.NewReader("stream")) // no GetBody
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if hits.Load() != 1 {
			t.Fatalf("hits = %d, want 1", hits.Load())
		}
	})
	t.Run("unreplayable body on refused connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		rt := newRetrier(t, newTransport(t, nil, Options{Hosts: []string{addr}}), RetryPolicy{})
		req := mustReq(t, testCtx(t), "POST", "https://"+addr, nil)
		req.Body = io.NopCloser(strings.NewReader("stream"))
		if _, err := rt.RoundTrip(req); !errors.Is(err, ErrBodyNotReplayable) {
			t.Fatalf("err = %v, want ErrBodyNotReplayable", err)
		}
	})
}

func TestGetRetriedOn5xx(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var hits, newConns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) < 3 {
					w.WriteHeader(code)
					_, _ = io.WriteString(w, strings.Repeat("busy ", 100))
					return
				}
				_, _ = io.WriteString(w, "ok")
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					newConns.Add(1)
				}
			}
			srv.StartTLS()
			defer srv.Close()
			rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
			resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, b)
			}
			if hits.Load() != 3 {
				t.Fatalf("server hits = %d, want 3", hits.Load())
			}
			// Discarded bodies were drained, so the connection was reused.
			if newConns.Load() != 1 {
				t.Fatalf("connections = %d, want 1", newConns.Load())
			}
		})
	}
	t.Run("gives up after MaxAttempts", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{MaxAttempts: 4})
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || hits.Load() != 4 {
			t.Fatalf("status %d after %d hits, want 502 after 4", resp.StatusCode, hits.Load())
		}
	})
	t.Run("connection error", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				hijackClose(w, r)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if hits.Load() != 2 {
			t.Fatalf("hits = %d, want 2", hits.Load())
		}
	})
}

func TestRetryAfter(t *testing.T) {
	t.Run("honoured", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
		start := time.Now()
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if d := time.Since(start); d < 950*time.Millisecond {
			t.Fatalf("retried after %v, want >= 1s", d)
		}
		if resp.StatusCode != http.StatusOK || hits.Load() != 2 {
			t.Fatalf("status %d after %d hits", resp.StatusCode, hits.Load())
		}
	})
	t.Run("above cap returned at once", func(t *testing.T) {
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{MaxRetryAfter: 10 * time.Second})
		start := time.Now()
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("waited %v", d)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "60" || hits.Load() != 1 {
			t.Fatalf("status %d, Retry-After %q, hits %d", resp.StatusCode, resp.Header.Get("Retry-After"), hits.Load())
		}
	})
	t.Run("http date uses the clock", func(t *testing.T) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		var hits atomic.Int64
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				w.Header().Set("Retry-After", now.Add(7*time.Second).Format(http.TimeFormat))
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		var waited time.Duration
		rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{
			Now:   func() time.Time { return now },
			Sleep: func(_ context.Context, d time.Duration) error { waited = d; return nil },
		})
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if waited != 7*time.Second {
			t.Fatalf("waited %v, want 7s", waited)
		}
	})
}

func TestCancelDuringBackoff(t *testing.T) {
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	rt := newRetrier(t, newTransport(t, srv, Options{}), RetryPolicy{})
	ctx, cancel := context.WithCancel(testCtx(t))
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := rt.RoundTrip(mustReq(t, ctx, "GET", srv.URL, nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("returned after %v, want promptly", d)
	}
}

func TestBackoffBounds(t *testing.T) {
	r := newRetrier(t, http.DefaultTransport, RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second})
	for attempt, max := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: 2 * time.Second, 100: 2 * time.Second} {
		for i := 0; i < 200; i++ {
			if d := r.backoff(attempt); d < 0 || d > max {
				t.Fatalf("backoff(%d) = %v, want in [0, %v]", attempt, d, max)
			}
		}
	}
}

// sessionServer answers 401 INVALID_SESSION unless the session header holds
// the current session.
func TestSessionRefresh(t *testing.T) {
	var current atomic.Value
	current.Store("s2")
	var hits atomic.Int64
	var lastBody atomic.Value
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		if r.Header.Get("X-Authentication") != current.Load().(string) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"status":"FAILURE","error":"INVALID_SESSION_INFORMATION"}`)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	tr := newTransport(t, srv, Options{})
	var session atomic.Value
	session.Store("s1")
	// A signer that stamps the session on each attempt.
	signer := rtFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("X-Authentication", session.Load().(string))
		return tr.RoundTrip(r)
	})
	var refreshes atomic.Int64
	p := RetryPolicy{
		SessionExpired: func(resp *http.Response) bool {
			b, err := PeekBody(resp, 512)
			return err == nil && bytes.Contains(b, []byte("INVALID_SESSION"))
		},
		RefreshSession: func(context.Context) error {
			refreshes.Add(1)
			session.Store("s2")
			return nil
		},
	}
	rt := newRetrier(t, signer, p)
	resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "POST", srv.URL, []byte("bet=1")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "ok" || refreshes.Load() != 1 || hits.Load() != 2 || lastBody.Load() != "bet=1" {
		t.Fatalf("body %q, refreshes %d, hits %d, last body %q", b, refreshes.Load(), hits.Load(), lastBody.Load())
	}

	t.Run("refreshed at most once", func(t *testing.T) {
		current.Store("never")
		refreshes.Store(0)
		hits.Store(0)
		resp, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body) // the peeked bytes are still there
		_ = resp.Body.Close()
		if !bytes.Contains(b, []byte("INVALID_SESSION")) || refreshes.Load() != 1 || hits.Load() != 2 {
			t.Fatalf("body %q, refreshes %d, hits %d", b, refreshes.Load(), hits.Load())
		}
	})
	t.Run("refresh failure", func(t *testing.T) {
		p.RefreshSession = func(context.Context) error { return errors.New("login refused") }
		rt := newRetrier(t, signer, p)
		_, err := rt.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if !errors.Is(err, ErrSessionRefresh) {
			t.Fatalf("err = %v, want ErrSessionRefresh", err)
		}
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPeekBody(t *testing.T) {
	closed := false
	resp := &http.Response{Body: &closeRecorder{Reader: strings.NewReader("hello, world"), closed: &closed}}
	got, err := PeekBody(resp, 5)
	if err != nil || string(got) != "hello" {
		t.Fatalf("PeekBody = %q, %v", got, err)
	}
	all, _ := io.ReadAll(resp.Body)
	if string(all) != "hello, world" {
		t.Fatalf("restored body = %q", all)
	}
	_ = resp.Body.Close()
	if !closed {
		t.Fatal("original body not closed")
	}
	if b, err := PeekBody(nil, 5); b != nil || err != nil {
		t.Fatal("nil response")
	}
}

type closeRecorder struct {
	io.Reader
	closed *bool
}

func (c *closeRecorder) Close() error { *c.closed = true; return nil }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"spaces", " 3 ", 3 * time.Second, true},
		{"imf date", "Mon, 23 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"rfc850 date", "Monday, 23-Nov-26 12:01:00 GMT", time.Minute, true},
		{"asctime", "Mon Nov 23 12:00:10 2026", 10 * time.Second, true},
		{"past date", "Mon, 23 Nov 2026 11:00:00 GMT", 0, true},
		{"huge", "99999999999999999999999", time.Duration(int64(1<<63-1)/int64(time.Second)) * time.Second, true},
		{"negative", "-1", 0, false},
		{"fraction", "1.5", 0, false},
		{"empty", "", 0, false},
		{"junk", "soon", 0, false},
		{"digits then junk", "10s", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.in, now)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"0", "1", "120", "Mon, 23 Nov 2026 12:00:30 GMT", "Monday, 23-Nov-26 12:01:00 GMT",
		"Mon Nov 23 12:00:10 2026", "-1", "1.5", "", " ", "99999999999999999999", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("negative duration %v for %q", d, s)
		}
		if !ok && d != 0 {
			t.Fatalf("non-zero duration %v with ok=false for %q", d, s)
		}
		// Round trip: a parsed delay-seconds value formats back to the
		// same number of seconds (below saturation).
		if v := strings.TrimSpace(s); ok && v != "" && v[0] >= '0' && v[0] <= '9' {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n < 1<<33 {
				back, ok2 := ParseRetryAfter(strconv.FormatInt(int64(d/time.Second), 10), now)
				if !ok2 || back != d || int64(d/time.Second) != n {
					t.Fatalf("round trip of %q: %v -> %v", s, d, back)
				}
			}
		}
	})
}
