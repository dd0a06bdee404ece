package redisstore_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	redisstore "github.com/keystile/keystile/internal/store/redis"
)

// tlsPONG is a TLS server on loopback that answers PING (enough for
// Ready), with a self-signed certificate for
// 127.0.0.1 whose PEM is at caFile.
func tlsPONG(t *testing.T) (addr, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			cn, err := l.Accept()
			if err != nil {
				return
			}
			go servePONG(cn)
		}
	}()
	return l.Addr().String(), caFile
}

// servePONG reads RESP arrays of bulk strings and answers PING with
// +PONG, HELLO with an error (a Redis 5), anything else with +OK.
func servePONG(cn net.Conn) {
	defer cn.Close()
	r := bufio.NewReader(cn)
	for {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "*") {
			return
		}
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		var args []string
		for range n { // $len, then the bytes
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			a, err := r.ReadString('\n')
			if err != nil {
				return
			}
			args = append(args, strings.ToUpper(strings.TrimSpace(a)))
		}
		reply := "+OK\r\n"
		switch {
		case len(args) > 0 && args[0] == "PING":
			reply = "+PONG\r\n"
		case len(args) > 0 && args[0] == "HELLO":
			reply = "-ERR unknown command 'HELLO'\r\n"
		}
		if _, err := cn.Write([]byte(reply)); err != nil {
			return
		}
	}
}

func TestTLS(t *testing.T) {
	addr, caFile := tlsPONG(t)
	ctx := context.Background()
	c, err := redisstore.Open(ctx, redisstore.Options{Addr: addr, CAFile: caFile})
	if err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	_ = c.Close()
	// rediss:// without the CA: the system roots do not know the
	// certificate.
	o, err := redisstore.ParseURL("rediss://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisstore.Open(ctx, o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", err)
	}
	// The URL's TLS settings plus the CA file.
	o.CAFile = caFile
	c, err = redisstore.Open(ctx, o)
	if err != nil {
		t.Fatalf("rediss with the CA file: %v", err)
	}
	_ = c.Close()
	// Plain text to a TLS server fails.
	if _, err := redisstore.Open(ctx, redisstore.Options{Addr: addr, ReadTimeout: 200 * time.Millisecond}); err == nil {
		t.Fatal("plain text to a TLS server succeeded")
	}
}
