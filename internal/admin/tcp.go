package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/mfa"
)

// TCPOptions configure the optional TCP listener (admin.listen): the same
// API for clients on other hosts, behind three checks in this order: the
// address allow list (at accept, before TLS), TLS (required off
// loopback), and an admin bearer token; the second factor then applies as
// on the socket, sessions bound to the token's name.
type TCPOptions struct {
	// Addr is the host:port to listen on.
	Addr string
	// TLS terminates TLS (at least 1.2); nil serves plain HTTP, which is
	// refused unless Addr is a loopback address.
	TLS *tls.Config
	// Allow lists the client addresses that may connect; nil means
	// loopback only.
	Allow *AllowList
	// Tokens are the accepted admin bearer tokens (digests). Required.
	Tokens []BearerToken
}

// listenTCP binds the TCP listener and builds its server around inner
// (the gated mux).
func (s *Server) listenTCP(inner http.Handler) error {
	o := s.o.TCP
	if len(o.Tokens) == 0 {
		return errors.New("admin: the TCP admin listener needs at least one admin token (admin.tokens)")
	}
	if o.TLS == nil && !config.IsLoopbackListen(o.Addr) {
		return errNotLoopback
	}
	allow := o.Allow
	if allow == nil {
		allow = LoopbackOnly()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", o.Addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); o.TLS == nil && (!ok || !ta.IP.IsLoopback()) {
		_ = ln.Close()
		return errNotLoopback
	}
	s.tcpAddr = ln.Addr().String()
	ln = allow.Listener(ln, func(addr net.Addr, n uint64) {
		s.log.Warn("admin: refused a connection from an address not in admin.allow_cidrs", "remote", addr.String(), "refused_total", n)
	})
	if o.TLS != nil {
		tc := o.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
		ln = tls.NewListener(ln, tc)
	}
	s.tcpLn = ln
	s.tcpSrv = &http.Server{
		Handler:           allow.Handler(s.audited(s.checkBearer(inner))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// TCPAddr is the TCP listener's address ("" if none).
func (s *Server) TCPAddr() string { return s.tcpAddr }

// checkBearer admits requests with a configured admin bearer token; the
// caller is then "token:NAME".
func (s *Server) checkBearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerFromHeader(r.Header.Get("Authorization"))
		var name string
		if ok {
			var d [32]byte
			var err error
			if d, err = ParseAdminToken(tok); err == nil {
				name, ok = matchBearer(s.o.TCP.Tokens, d)
			} else {
				ok = false
			}
		}
		if !ok {
			s.log.Warn("admin: refused a request without a valid admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="keystile-admin"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required")
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, mfa.Principal("token:"+name)))
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		next.ServeHTTP(w, r)
	})
}
