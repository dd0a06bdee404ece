package console_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns
// the paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keystile console test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestConsoleTLS: over TLS the session cookie is __Host- prefixed and
// Secure, HSTS is sent, and TLS below 1.2 is refused.
func TestConsoleTLS(t *testing.T) {
	cf, kf, pool := selfSigned(t)
	r := startRig(t, rigOptions{noMFA: true, extra: "  tls_cert: " + cf + "\n  tls_key: " + kf + "\n"})
	if !strings.HasPrefix(r.url, "https://127.0.0.1:") {
		t.Fatalf("url %s", r.url)
	}
	c := r.client()
	c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	lp := c.do("GET", "/login", nil, nil)
	if lp.header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
	a := c.do("POST", "/login", url.Values{"csrf": {csrfOf(lp.body)}, "token": {r.adminTok}}, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("log-in: %d %s", a.status, a.body)
	}
	var sc string
	for _, h := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "__Host-keystile-console=") {
			sc = h
		}
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Domain=") {
		t.Errorf("cookie %q has a domain", sc)
	}
	if a := c.do("GET", "/", nil, nil); a.status != 200 {
		t.Fatalf("overview over TLS: %d", a.status)
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}} // #nosec G402 -- checks that the server refuses it
	if resp, err := old.Get(r.url + "/login"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 accepted")
	}
}

// TestConsoleTLSFromLocalCA: console.tls_local_ca serves a certificate of
// keystile's local CA, which a browser trusting local-ca.pem accepts, for
// the loopback names by default.
func TestConsoleTLSFromLocalCA(t *testing.T) {
	r := startRig(t, rigOptions{noMFA: true, extra: "  tls_local_ca: true\n"})
	if !strings.HasPrefix(r.url, "https://127.0.0.1:") {
		t.Fatalf("url %s", r.url)
	}
	pem, err := os.ReadFile(filepath.Join(r.dataDir, "local-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("local-ca.pem holds no certificate")
	}
	c := r.client()
	c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	lp := c.do("GET", "/login", nil, nil)
	if lp.status != http.StatusOK || lp.header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("login page over the local CA's TLS: %d, HSTS %q", lp.status, lp.header.Get("Strict-Transport-Security"))
	}
	a := c.do("POST", "/login", url.Values{"csrf": {csrfOf(lp.body)}, "token": {r.adminTok}}, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("log-in: %d %s", a.status, a.body)
	}
	// A client that does not trust the local CA is refused.
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}
	if resp, err := plain.Get(r.url + "/login"); err == nil {
		resp.Body.Close()
		t.Fatal("a client without the local CA trusted the console's certificate")
	}
}
