// Package alerttest runs real servers on loopback for the alert sinks'
// tests: an SMTP server (github.com/emersion/go-smtp) that offers STARTTLS
// with a self-signed certificate made for the run, checks SMTP AUTH and
// records every message with what the session looked like. It is imported
// by tests only.
package alerttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the server accepted.
type Mail struct {
	From string
	To   []string
	// Data is the message as received (after the DATA command).
	Data []byte
	// TLS reports whether the session was encrypted when the message
	// was sent; User is the authenticated user ("" if none).
	TLS  bool
	User string
}

// SMTPOptions configure StartSMTP.
type SMTPOptions struct {
	// NoTLS makes the server offer no STARTTLS.
	NoTLS bool
	// Implicit serves TLS from the first byte (port 465 style).
	Implicit bool
	// User and Password, when set, are required (AUTH PLAIN).
	User, Password string
	// Reject answers every RCPT with this SMTP code (e.g. 450, 550).
	Reject int
}

// SMTPServer is a running test SMTP server.
type SMTPServer struct {
	Host string
	Port int
	// CAPEM is the self-signed certificate to trust; Pool holds it.
	CAPEM []byte
	Pool  *x509.CertPool

	srv *smtp.Server
	ln  net.Listener
	o   SMTPOptions

	mu    sync.Mutex
	mails []Mail
	// raw holds every byte clients sent on the wire (see Raw).
	raw []byte
}

// StartSMTP starts a server on 127.0.0.1 with a fresh certificate for
// "localhost" and 127.0.0.1. Close stops it.
func StartSMTP(o SMTPOptions) (*SMTPServer, error) {
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	s := &SMTPServer{CAPEM: certPEM, o: o, Pool: x509.NewCertPool()}
	s.Pool.AppendCertsFromPEM(certPEM)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 10
	srv.ErrorLog = discardLog{}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if !o.NoTLS {
		srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Host = "127.0.0.1"
	s.Port = ln.Addr().(*net.TCPAddr).Port
	ln = &recordingListener{Listener: ln, s: s}
	if o.Implicit {
		ln = tls.NewListener(ln, tc)
	}
	s.srv, s.ln = srv, ln
	go func() { _ = srv.Serve(s.ln) }()
	return s, nil
}

// Addr is host:port.
func (s *SMTPServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Close stops the server.
func (s *SMTPServer) Close() error { return s.srv.Close() }

// Mails returns the messages accepted so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Raw returns every byte clients sent on the wire (TLS records
// included, undecrypted) — for checks that nothing travelled in clear.
func (s *SMTPServer) Raw() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.raw...)
}

type session struct {
	s    *SMTPServer
	c    *smtp.Conn
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.o.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.o.User || pass != ss.s.o.Password {
			return smtp.ErrAuthFailed
		}
		ss.user = user
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.o.User != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if c := ss.s.o.Reject; c != 0 {
		return &smtp.SMTPError{Code: c, EnhancedCode: smtp.EnhancedCode{c / 100, 0, 0}, Message: "rejected by test"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, Mail{From: ss.from, To: ss.to, Data: b, TLS: isTLS, User: ss.user})
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

type recordingListener struct {
	net.Listener
	s *SMTPServer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, s: l.s}, nil
}

type recordingConn struct {
	net.Conn
	s *SMTPServer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.s.mu.Lock()
		c.s.raw = append(c.s.raw, p[:n]...)
		c.s.mu.Unlock()
	}
	return n, err
}

type discardLog struct{}

func (discardLog) Printf(string, ...interface{}) {}
func (discardLog) Println(...interface{})        {}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "keystile alert test SMTP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, errors.New("alerttest: key pair")
	}
	return cert, certPEM, nil
}
