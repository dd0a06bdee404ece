package admin

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

func adminToken(t *testing.T, name string) (secret.Value, BearerToken) {
	t.Helper()
	tok, d, err := NewAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok, BearerToken{Name: name, Digest: d}
}

// selfSigned returns a server certificate for 127.0.0.1 and a pool
// trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keystile admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestTCPListenerBearer(t *testing.T) {
	tok, bt := adminToken(t, "laptop")
	other, _ := adminToken(t, "other")
	f := newMFAFixture(t, Options{TCP: &TCPOptions{Addr: "127.0.0.1:0", Tokens: []BearerToken{bt}}})
	ctx := context.Background()
	rc, err := NewRemoteClient("http://"+f.s.TCPAddr(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rc.MFAStatus(ctx)
	if err != nil || st.Principal != "token:laptop" {
		t.Fatalf("status over TCP: %+v %v", st, err)
	}
	if _, err := rc.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-1")}}); err != nil {
		t.Fatal(err)
	}
	bad, _ := NewRemoteClient("http://"+f.s.TCPAddr(), other, nil)
	if _, err := bad.ListSecrets(ctx); apiCode(err) != "unauthorized" {
		t.Fatalf("unknown token: %v", err)
	}
	for _, h := range []string{"", "Bearer", "Bearer " + string(tok.Reveal()) + "x", "Basic " + string(tok.Reveal()),
		"Bearer " + strings.ToUpper(string(tok.Reveal())), "Bearer kst_live_abc", string(tok.Reveal())} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+f.s.TCPAddr()+PathSecrets, nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(body), "kst_") {
			t.Errorf("Authorization %.30q: %d %s", h, resp.StatusCode, body)
		}
	}
	// "bearer" in any case is the same scheme.
	req, _ := http.NewRequest(http.MethodGet, "http://"+f.s.TCPAddr()+PathSecrets, nil)
	req.Header.Set("Authorization", "bearer "+string(tok.Reveal()))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("lower-case scheme: %v", err)
	}
	if strings.Contains(f.logs.String(), string(tok.Reveal())) {
		t.Fatal("the admin token reached the log")
	}

	// Sessions are bound to the principal: a socket session is no good
	// over TCP, and the other way round.
	f.enroll(t)
	g, err := f.c.MFALogin(ctx, f.code(t))
	if err != nil {
		t.Fatal(err)
	}
	rc.SetMFA(ClientMFA{Session: g.Session})
	if _, err := rc.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-2")}}); apiCode(err) != "mfa_session_invalid" {
		t.Fatalf("socket session over TCP: %v", err)
	}
	f.clock.Add(mfa.Period)
	g2, err := rc.MFALogin(ctx, f.code(t))
	if err != nil {
		t.Fatal(err)
	}
	rc.SetMFA(ClientMFA{Session: g2.Session})
	if _, err := rc.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-2")}}); err != nil {
		t.Fatalf("TCP session over TCP: %v", err)
	}
	f.c.SetMFA(ClientMFA{Session: g2.Session})
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-3")}}); apiCode(err) != "mfa_session_invalid" {
		t.Fatalf("TCP session over the socket: %v", err)
	}
}

// TestTCPAllowListFirst: a client outside admin.allow_cidrs gets its
// connection closed before any byte of HTTP or TLS, even with a valid
// token, and spoofed forwarding headers change nothing.
func TestTCPAllowListFirst(t *testing.T) {
	tok, bt := adminToken(t, "laptop")
	cert, pool := selfSigned(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := NewAllowList([]string{"10.0.0.0/8", "::ffff:192.168.0.0/112"})
			if err != nil {
				t.Fatal(err)
			}
			o := &TCPOptions{Addr: "127.0.0.1:0", Tokens: []BearerToken{bt}, Allow: allow}
			if tc.tls {
				o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			f := newMFAFixture(t, Options{TCP: o})
			c, err := net.DialTimeout("tcp", f.s.TCPAddr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET /v1/secrets HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer "+string(tok.Reveal())+"\r\nX-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\n\r\n")
			b, err := io.ReadAll(bufio.NewReader(c))
			var ne net.Error
			if len(b) != 0 || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("the server answered (%q) or kept the connection (%v)", b, err)
			}
			scheme := "http://"
			if tc.tls {
				scheme = "https://"
			}
			rc, _ := NewRemoteClient(scheme+f.s.TCPAddr(), tok, pool)
			if _, err := rc.ListSecrets(context.Background()); err == nil {
				t.Fatal("a refused address got an answer")
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(f.logs.String(), "admin.allow_cidrs") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(f.logs.String(), "refused a connection") {
				t.Fatal("the refusal was not logged")
			}
		})
	}
}

func TestTCPTLS(t *testing.T) {
	tok, bt := adminToken(t, "laptop")
	cert, pool := selfSigned(t)
	f := newMFAFixture(t, Options{TCP: &TCPOptions{Addr: "127.0.0.1:0", Tokens: []BearerToken{bt},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}})
	ctx := context.Background()
	rc, err := NewRemoteClient("https://"+f.s.TCPAddr(), tok, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.ListSecrets(ctx); err != nil {
		t.Fatal(err)
	}
	untrusting, _ := NewRemoteClient("https://"+f.s.TCPAddr(), tok, x509.NewCertPool())
	if _, err := untrusting.ListSecrets(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unverified certificate: %v", err)
	}
	// TLS below 1.2 is refused.
	c, err := tls.Dial("tcp", f.s.TCPAddr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}) // #nosec G402 -- the refusal is the test
	if err == nil {
		c.Close()
		t.Fatal("TLS 1.1 accepted")
	}
	// Plain HTTP to the TLS port gets nothing useful.
	resp, err := http.Get("http://" + f.s.TCPAddr() + PathSecrets)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to TLS: %d", resp.StatusCode)
		}
	}
}

func TestTCPListenChecks(t *testing.T) {
	_, bt := adminToken(t, "laptop")
	cert, _ := selfSigned(t)
	v := newVault(t)
	for _, tc := range []struct {
		name string
		o    TCPOptions
		ok   bool
	}{
		{"loopback plain", TCPOptions{Addr: "127.0.0.1:0", Tokens: []BearerToken{bt}}, true},
		{"all interfaces plain", TCPOptions{Addr: "0.0.0.0:0", Tokens: []BearerToken{bt}}, false},
		{"empty host plain", TCPOptions{Addr: ":0", Tokens: []BearerToken{bt}}, false},
		{"all interfaces with TLS", TCPOptions{Addr: "0.0.0.0:0", Tokens: []BearerToken{bt}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, true},
		{"no tokens", TCPOptions{Addr: "127.0.0.1:0"}, false},
		{"bad address", TCPOptions{Addr: "nope", Tokens: []BearerToken{bt}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := tc.o
			s, err := Listen(Options{Socket: dir + "/a.sock", Vault: v, TCP: &o})
			if (err == nil) != tc.ok {
				t.Fatalf("Listen: %v", err)
			}
			if s != nil {
				go s.Serve()
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else if _, serr := NewClient(dir + "/a.sock"); !errors.Is(serr, ErrNotRunning) {
				t.Fatalf("a failed Listen left its socket: %v", serr)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	a, err := NewAllowList([]string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"192.168.1.7", true},
		{"192.168.1.8", false},
		{"2001:db8::1", true},
		{"fe80::1%eth0", false},
		{"172.16.5.5", true},
		{"172.32.0.1", false},
		{"127.0.0.1", false},
		{"::1", false},
	} {
		if got := a.Allows(netip.MustParseAddr(tc.addr)); got != tc.ok {
			t.Errorf("%s: %v", tc.addr, got)
		}
	}
	if a.Allows(netip.Addr{}) {
		t.Error("the zero address")
	}
	lo, _ := NewAllowList(nil)
	if !lo.Allows(netip.MustParseAddr("127.9.9.9")) || !lo.Allows(netip.MustParseAddr("::1")) || lo.Allows(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("default: %s", lo)
	}
	for _, bad := range []string{"10.0.0.0/33", "host.example", "", "::ffff:1.2.3.4/90", "fe80::1%eth0"} {
		if _, err := NewAllowList([]string{bad}); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	// The handler reads the connection's address only.
	h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, tc := range []struct {
		remote string
		xff    string
		want   int
	}{
		{"10.9.9.9:5555", "", http.StatusNoContent},
		{"127.0.0.1:5555", "10.9.9.9", http.StatusForbidden},
		{"[::ffff:10.0.0.1]:1", "", http.StatusNoContent},
		{"garbage", "", http.StatusForbidden},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", tc.xff)
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s (XFF %q): %d", tc.remote, tc.xff, rec.Code)
		}
	}
}

func TestNewRemoteClientChecks(t *testing.T) {
	tok, _ := adminToken(t, "x")
	for _, tc := range []struct {
		url string
		tok secret.Value
		ok  bool
	}{
		{"https://admin.example:7879", tok, true},
		{"http://127.0.0.1:7879", tok, true},
		{"http://[::1]:7879", tok, true},
		{"http://admin.example:7879", tok, false},
		{"http://10.0.0.1:7879", tok, false},
		{"https://u:p@admin.example", tok, false},
		{"https://admin.example/v1", tok, false},
		{"ftp://admin.example", tok, false},
		{"https://admin.example", secret.New([]byte("kst_live_x")), false},
		{"::", tok, false},
	} {
		if _, err := NewRemoteClient(tc.url, tc.tok, nil); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.url, err)
		}
	}
}

func TestAdminTokenRoundTrip(t *testing.T) {
	tok, d, err := NewAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAdminToken(string(tok.Reveal()))
	if err != nil || got != d || !strings.HasPrefix(string(tok.Reveal()), AdminTokenPrefix) {
		t.Fatalf("%v %v", got == d, err)
	}
	if name, ok := matchBearer([]BearerToken{{"a", [32]byte{1}}, {"b", d}}, d); !ok || name != "b" {
		t.Fatal(name, ok)
	}
	if _, ok := matchBearer([]BearerToken{{"a", [32]byte{1}}}, d); ok {
		t.Fatal("matched an unknown digest")
	}
}

func FuzzParseAdminToken(f *testing.F) {
	tok, _, _ := NewAdminToken(nil)
	f.Add(string(tok.Reveal()))
	f.Add("ksa_")
	f.Add("Bearer ksa_x")
	f.Add(strings.Repeat("A", 47))
	f.Fuzz(func(t *testing.T, s string) {
		h := "Bearer " + s
		tok, ok := bearerFromHeader(h)
		if !ok || tok != strings.TrimSpace(s) {
			t.Fatalf("header %q -> %q %v", h, tok, ok)
		}
		d, err := ParseAdminToken(s)
		if err != nil {
			return
		}
		if len(s) != 47 || !strings.HasPrefix(s, AdminTokenPrefix) || d == [32]byte{} {
			t.Fatalf("accepted %q", s)
		}
	})
}
