package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	badPEM := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badPEM, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"minimal", Options{Hosts: []string{"api.binance.com"}}, true},
		{"host and port", Options{Hosts: []string{"api.binance.com:8443", "[::1]:9000", "127.0.0.1"}}, true},
		{"tls13", Options{Hosts: []string{"a.example"}, MinTLSVersion: tls.VersionTLS13}, true},
		{"no hosts", Options{}, false},
		{"scheme in host", Options{Hosts: []string{"https://api.binance.com"}}, false},
		{"path in host", Options{Hosts: []string{"api.binance.com/api"}}, false},
		{"wildcard", Options{Hosts: []string{"*.binance.com"}}, false},
		{"userinfo", Options{Hosts: []string{"u@api.binance.com"}}, false},
		{"empty entry", Options{Hosts: []string{""}}, false},
		{"bad port", Options{Hosts: []string{"a.example:0"}}, false},
		{"port too big", Options{Hosts: []string{"a.example:70000"}}, false},
		{"tls10", Options{Hosts: []string{"a.example"}, MinTLSVersion: tls.VersionTLS10}, false},
		{"tls11", Options{Hosts: []string{"a.example"}, MinTLSVersion: tls.VersionTLS11}, false},
		{"negative timeout", Options{Hosts: []string{"a.example"}, Total: -time.Second}, false},
		{"negative pool", Options{Hosts: []string{"a.example"}, MaxIdleConnsPerHost: -1}, false},
		{"client cert without key", Options{Hosts: []string{"a.example"}, ClientCertificate: &tls.Certificate{}}, false},
		{"missing CA file", Options{Hosts: []string{"a.example"}, CAFile: filepath.Join(dir, "nope.pem")}, false},
		{"CA file without PEM", Options{Hosts: []string{"a.example"}, CAFile: badPEM}, false},
		{"bad server name", Options{Hosts: []string{"a.example"}, ServerName: "a b"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok {
				if !errors.Is(err, ErrInvalidOptions) {
					t.Fatalf("Validate = %v, want ErrInvalidOptions", err)
				}
				if _, err := New(tc.o); err == nil {
					t.Fatal("New accepted invalid options")
				}
			}
		})
	}
}

func TestCAFile(t *testing.T) {
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemCert(srv), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Hosts: []string{hostOf(srv)}, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
	if err != nil {
		t.Fatalf("RoundTrip with CAFile: %v", err)
	}
	_ = resp.Body.Close()
}

func TestSchemeAndHostChecks(t *testing.T) {
	srv, cl := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tr := newTransport(t, srv, Options{})
	_, port, _ := net.SplitHostPort(hostOf(srv))
	tests := []struct {
		name    string
		url     string
		host    string // Host header override
		wantErr error
	}{
		{"other port", "https://127.0.0.1:1/x", "", ErrHostNotAllowed},
		{"other host same port", "https://localhost:" + port + "/x", "", ErrHostNotAllowed},
		{"default port not listed", "https://127.0.0.1/x", "", ErrHostNotAllowed},
		{"host header elsewhere", srv.URL + "/x", "evil.example", ErrHostNotAllowed},
		{"plain http", "http://" + hostOf(srv) + "/x", "", ErrPlainHTTP},
		{"ftp", "ftp://" + hostOf(srv) + "/x", "", ErrSchemeNotAllowed},
		{"userinfo", "https://u:" + canary + "@" + hostOf(srv) + "/x", "", ErrHostNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := mustReq(t, testCtx(t), "GET", tc.url+"?signature="+canary, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			_, err := tr.RoundTrip(req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), canary) {
				t.Fatalf("error leaks the canary: %v", err)
			}
		})
	}
	if n := cl.accepts.Load(); n != 0 {
		t.Fatalf("server accepted %d connections for refused requests, want 0", n)
	}
	// The allowed request still works.
	resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL+"/ok", nil))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

func TestDialGuardRefusesUnlistedAddress(t *testing.T) {
	tr, err := New(Options{Hosts: []string{"api.example:443"}})
	if err != nil {
		t.Fatal(err)
	}
	// The pool asks the dialer directly: the guard holds even if RoundTrip's
	// check were bypassed.
	for _, addr := range []string{"127.0.0.1:443", "api.example:80", "API.EXAMPLE.:8443", "bad addr"} {
		if _, err := tr.dialTLS(testCtx(t), "tcp", addr); !errors.Is(err, ErrHostNotAllowed) {
			t.Errorf("dialTLS(%q) = %v, want ErrHostNotAllowed", addr, err)
		}
	}
	if _, err := tr.dialPlain(testCtx(t), "tcp", "api.example:443"); !errors.Is(err, ErrPlainHTTP) {
		t.Errorf("dialPlain without sandbox = %v, want ErrPlainHTTP", err)
	}
}

func TestPlainHTTP(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "sandbox")
	}))
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(hostOf(srv))

	t.Run("refused without sandbox", func(t *testing.T) {
		tr := newTransport(t, srv, Options{})
		_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if !errors.Is(err, ErrPlainHTTP) {
			t.Fatalf("err = %v, want ErrPlainHTTP", err)
		}
		if cl.accepts.Load() != 0 {
			t.Fatal("plain connection was dialled")
		}
	})
	t.Run("loopback sandbox allowed", func(t *testing.T) {
		tr := newTransport(t, srv, Options{AllowPlainHTTPLoopback: true, Hosts: []string{hostOf(srv), "localhost:" + port}})
		for _, u := range []string{srv.URL, "http://localhost:" + port} {
			resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", u, nil))
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) != "sandbox" {
				t.Fatalf("body = %q", b)
			}
		}
	})
	t.Run("non-loopback refused even in sandbox", func(t *testing.T) {
		// 192.0.2.0/24 is TEST-NET-1: never dialled because it is not loopback.
		tr := newTransport(t, nil, Options{AllowPlainHTTPLoopback: true, Hosts: []string{"192.0.2.1:80"}})
		start := time.Now()
		_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", "http://192.0.2.1/", nil))
		if !errors.Is(err, ErrPlainHTTP) {
			t.Fatalf("err = %v, want ErrPlainHTTP", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("refusal took a dial attempt")
		}
	})
}

func TestTLS11ServerRefused(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11} // #nosec G402 -- the legacy server under test
	srv.StartTLS()
	defer srv.Close()
	tr := newTransport(t, srv, Options{})
	_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
	if err == nil {
		t.Fatal("TLS 1.1 server accepted")
	}
	if !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("err = %v, want a protocol version alert", err)
	}
}

func TestTLS13Minimum(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	tr := newTransport(t, srv, Options{MinTLSVersion: tls.VersionTLS13})
	if _, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil)); err == nil {
		t.Fatal("TLS 1.2 server accepted with MinTLSVersion 1.3")
	}
}

func TestCertificateHostname(t *testing.T) {
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	_, port, _ := net.SplitHostPort(hostOf(srv))
	// httptest's certificate is valid for 127.0.0.1, ::1 and example.com,
	// not for "localhost".
	t.Run("wrong name refused", func(t *testing.T) {
		tr := newTransport(t, srv, Options{Hosts: []string{"localhost:" + port}})
		_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", "https://localhost:"+port, nil))
		var cv *tls.CertificateVerificationError
		if !errors.As(err, &cv) {
			t.Fatalf("err = %v, want certificate verification error", err)
		}
	})
	t.Run("untrusted root refused", func(t *testing.T) {
		// The system roots do not hold httptest's self-signed certificate.
		tr, err := New(Options{Hosts: []string{hostOf(srv)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("err = %v, want unknown authority", err)
		}
	})
	t.Run("ServerName override", func(t *testing.T) {
		tr := newTransport(t, srv, Options{Hosts: []string{"localhost:" + port}, ServerName: "example.com"})
		resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", "https://localhost:"+port, nil))
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		_ = resp.Body.Close()
	})
}

func TestClientCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.Organization[0])
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	// Reuse the server's own key pair as the client certificate.
	cert := srv.TLS.Certificates[0]
	tr := newTransport(t, srv, Options{ClientCertificate: &cert})
	resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: client certificate not presented", resp.StatusCode)
	}
}

func TestKeepAliveReuse(t *testing.T) {
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	tr := newTransport(t, srv, Options{})
	for i := 0; i < 50; i++ {
		resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if n := newConns.Load(); n != 1 {
		t.Fatalf("50 sequential requests opened %d connections, want 1", n)
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("connect (resolution hangs)", func(t *testing.T) {
		hang := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
		tr := newTransport(t, nil, Options{Hosts: []string{"venue.invalid"}, Resolver: hang, Connect: 150 * time.Millisecond})
		start := time.Now()
		_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", "https://venue.invalid/", nil))
		if err == nil {
			t.Fatal("no error")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("connect timeout took %v", d)
		}
		var uo *UnknownOutcomeError
		if errors.As(err, &uo) {
			t.Fatal("a failed connect is not an unknown outcome")
		}
	})
	t.Run("tls handshake", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() { // accept and never answer
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		tr := newTransport(t, nil, Options{Hosts: []string{ln.Addr().String()}, TLSHandshake: 150 * time.Millisecond})
		start := time.Now()
		_, err = tr.RoundTrip(mustReq(t, testCtx(t), "GET", "https://"+ln.Addr().String()+"/", nil))
		if err == nil || !strings.Contains(err.Error(), "tls handshake") {
			t.Fatalf("err = %v, want handshake timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("handshake timeout took %v", d)
		}
	})
	t.Run("response header", func(t *testing.T) {
		release := make(chan struct{})
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer close(release)
		tr := newTransport(t, srv, Options{ResponseHeader: 150 * time.Millisecond})
		start := time.Now()
		_, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err == nil {
			t.Fatal("no error")
		}
		var uo *UnknownOutcomeError
		if !errors.As(err, &uo) {
			t.Fatalf("err = %v, want UnknownOutcomeError (the request was written)", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("header timeout took %v", d)
		}
	})
	t.Run("total covers the body", func(t *testing.T) {
		release := make(chan struct{})
		srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer close(release)
		tr := newTransport(t, srv, Options{Total: 300 * time.Millisecond})
		start := time.Now()
		resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
		if err != nil {
			t.Fatalf("headers should arrive: %v", err)
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("body read err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("total timeout fired after %v", d)
		}
	})
}

func TestErrorsAndLogsCarryNoSecrets(t *testing.T) {
	var logs syncBuffer
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		_ = c.Close()
	}))
	tr := newTransport(t, srv, Options{Logger: debugLogger(&logs)})
	rt, err := NewRetrier(tr, RetryPolicy{InitialBackoff: time.Millisecond, Logger: debugLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		srv.URL + "/api/v3/order?symbol=BTCUSDT&signature=" + canary,
		"https://127.0.0.1:1/api?signature=" + canary,
	} {
		req := mustReq(t, testCtx(t), "POST", u, []byte("secret="+canary))
		req.Header.Set("X-MBX-APIKEY", canary)
		_, err := rt.RoundTrip(req)
		if err == nil {
			t.Fatal("no error")
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("error leaks the canary: %v", err)
		}
	}
	if strings.Contains(logs.String(), canary) {
		t.Fatalf("logs leak the canary:\n%s", logs.String())
	}
}

// The idle pool keeps every connection of a burst (Go's default keeps 2).
func TestIdlePoolKeepsBurst(t *testing.T) {
	const burst = 16
	var newConns atomic.Int64
	arrived := make(chan struct{}, 2*burst)
	gate := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-gate:
		case <-time.After(5 * time.Second):
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	tr := newTransport(t, srv, Options{})
	wave := func() {
		gate = make(chan struct{})
		errs := make(chan error, burst)
		for i := 0; i < burst; i++ {
			go func() {
				resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					err = resp.Body.Close()
				}
				errs <- err
			}()
		}
		for i := 0; i < burst; i++ { // all requests in flight at once
			<-arrived
		}
		close(gate)
		for i := 0; i < burst; i++ {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	wave()
	wave()
	if n := newConns.Load(); n != burst {
		t.Fatalf("two bursts of %d opened %d connections, want %d", burst, n, burst)
	}
}

func TestHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := newTransport(t, srv, Options{})
	resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("negotiated %s, want HTTP/2", resp.Proto)
	}
}
