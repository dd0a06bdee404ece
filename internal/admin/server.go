package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// Vault is what the admin API needs of the vault.
type Vault interface {
	Set(ctx context.Context, name string, fields map[string]secret.Value, o vault.SetOptions) (vault.Info, error)
	List(ctx context.Context) ([]vault.Info, error)
	Show(ctx context.Context, name string) (vault.Info, error)
	Revoke(ctx context.Context, name string, compromised bool) error
	Delete(ctx context.Context, name string) error
	Rekey(ctx context.Context) (vault.RekeyResult, error)
}

// CredentialGuard checks secret writes and removals against the server's
// configuration, so that every client gets the same refusals.
type CredentialGuard interface {
	// CheckFields returns an error naming the missing and unknown fields
	// if fields (names only) do not fit a venue that uses credential name.
	CheckFields(name string, fields []string) error
	// InUse describes what uses credential name; "" if nothing does.
	InUse(ctx context.Context, name string) (string, error)
}

// Options configure a Server.
type Options struct {
	// Socket is the unix socket path. Required.
	Socket string
	// AllowedUIDs may connect besides the server's own uid.
	AllowedUIDs []int
	// Vault serves the secret endpoints. Required.
	Vault Vault
	// Guard, if set, checks secret writes and removals.
	Guard CredentialGuard
	// Extra registers more routes (tokens, ...) on the mux.
	Extra func(mux *http.ServeMux)
	// Status returns the status document (see status.go).
	Status func(ctx context.Context) Status
	// MFA is the admin second factor; if nil, nothing can be enrolled and
	// the gate lets every request through.
	MFA MFA
	// MFAIssuer is the issuer authenticator apps show (admin.mfa.issuer).
	MFAIssuer string
	// TCP, if set, adds the TCP listener (admin.listen).
	TCP *TCPOptions
	// Events, if set, receives one audit event per admin write (every
	// method but GET and HEAD), refused ones included, once answered
	// (see events.go).
	Events audit.Sink
	// Logger; if nil, discard.
	Logger *slog.Logger
	// Audit, if set, receives one record per admin request that changes
	// something (audit.go), whoever sent it.
	Audit audit.Sink
}

// Server is the admin API server.
type Server struct {
	o    Options
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
	self int

	inner http.Handler // the gated mux every listener (and InProcess) serves

	tcpLn   net.Listener // nil unless Options.TCP
	tcpSrv  *http.Server
	tcpAddr string
}

// MaxBody bounds admin request bodies.
const MaxBody = 1 << 20

type ctxKey struct{}

// Listen creates the socket (mode 0600) and returns a server ready to Serve.
// A stale socket left by a dead server is replaced; a live one is an error.
func Listen(o Options) (*Server, error) {
	if o.Socket == "" || o.Vault == nil {
		return nil, errors.New("admin: socket path and vault are required")
	}
	if len(o.Socket) > 100 {
		return nil, fmt.Errorf("admin: socket path too long for a unix socket (%d bytes): use a shorter --data-dir or admin.socket", len(o.Socket))
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Lstat(o.Socket); err == nil {
		c, err := net.DialTimeout("unix", o.Socket, time.Second)
		if err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("admin: another keystile server is listening on %s", o.Socket)
		}
		if err := os.Remove(o.Socket); err != nil {
			return nil, fmt.Errorf("admin: remove stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("admin: socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", o.Socket)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", o.Socket, err)
	}
	if err := os.Chmod(o.Socket, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin: chmod socket: %w", err)
	}
	s := &Server{o: o, ln: ln, log: log, self: os.Getuid()}
	mux := http.NewServeMux()
	s.routes(mux)
	if o.Extra != nil {
		o.Extra(mux)
	}
	inner := s.mfaGate(mux)
	s.inner = inner
	if o.TCP != nil {
		if err := s.listenTCP(inner); err != nil {
			_ = ln.Close()
			_ = os.Remove(o.Socket)
			return nil, err
		}
	}
	s.srv = &http.Server{
		Handler:           s.audited(s.checkPeer(inner)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid := -1
			if uc, ok := c.(*net.UnixConn); ok {
				if id, err := peerUID(uc); err == nil {
					uid = id
				}
			}
			return context.WithValue(ctx, ctxKey{}, uid)
		},
	}
	return s, nil
}

// Serve serves the socket (and the TCP listener) until Shutdown; it
// returns nil after a clean shutdown, or the first listener's failure.
func (s *Server) Serve() error {
	serve := func(srv *http.Server, ln net.Listener) error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	if s.tcpSrv == nil {
		return serve(s.srv, s.ln)
	}
	errc := make(chan error, 2)
	go func() { errc <- serve(s.tcpSrv, s.tcpLn) }()
	go func() { errc <- serve(s.srv, s.ln) }()
	if err := <-errc; err != nil {
		return err
	}
	return <-errc
}

// Shutdown stops accepting, waits for in-flight requests and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	var terr error
	if s.tcpSrv != nil {
		terr = s.tcpSrv.Shutdown(ctx)
	}
	err := s.srv.Shutdown(ctx)
	_ = os.Remove(s.o.Socket)
	return errors.Join(err, terr)
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) // #nosec G115 -- fd fits int
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// PeerUID returns the uid of the connection's peer (-1 if unknown).
func PeerUID(ctx context.Context) int {
	if v, ok := ctx.Value(ctxKey{}).(int); ok {
		return v
	}
	return -1
}

func (s *Server) checkPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := PeerUID(r.Context())
		if uid < 0 || (uid != s.self && !slices.Contains(s.o.AllowedUIDs, uid)) {
			s.log.Warn("admin: refused connection from disallowed uid", "uid", uid, "path", r.URL.Path)
			WriteError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("uid %d may not use this keystile server (allowed: %d and admin.allowed_uids)", uid, s.self))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		st := Status{}
		if s.o.Status != nil {
			st = s.o.Status(r.Context())
		}
		WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+PathSecrets, func(w http.ResponseWriter, r *http.Request) {
		l, err := s.o.Vault.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, l)
	})
	mux.HandleFunc("GET "+PathSecrets+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		i, err := s.o.Vault.Show(r.Context(), r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, i)
	})
	mux.HandleFunc("PUT "+PathSecrets+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req SetSecretRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		NoteTarget(r, "", "credential "+quote(r.PathValue("name")))
		if reserved(w, r.PathValue("name")) {
			for _, v := range req.Fields {
				clear(v)
			}
			return
		}
		if s.o.Guard != nil {
			names := make([]string, 0, len(req.Fields))
			for k := range req.Fields {
				names = append(names, k)
			}
			slices.Sort(names)
			if err := s.o.Guard.CheckFields(r.PathValue("name"), names); err != nil {
				for _, v := range req.Fields {
					clear(v)
				}
				s.log.Warn("admin: credential refused", "name", r.PathValue("name"), "err", err)
				WriteError(w, http.StatusBadRequest, "invalid", err.Error())
				return
			}
		}
		fields := make(map[string]secret.Value, len(req.Fields))
		for k, v := range req.Fields {
			fields[k] = secret.New(v)
		}
		req.Fields = nil
		i, err := s.o.Vault.Set(r.Context(), r.PathValue("name"), fields, vault.SetOptions{RotationDays: req.RotationDays, MustExist: req.MustExist})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, i)
	})
	mux.HandleFunc("POST "+PathSecrets+"/{name}/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req RevokeSecretRequest
		if !DecodeJSON(w, r, &req) || reserved(w, r.PathValue("name")) {
			return
		}
		NoteTarget(r, "", fmt.Sprintf("credential %s; compromised %t", quote(r.PathValue("name")), req.Compromised))
		if err := s.o.Vault.Revoke(r.Context(), r.PathValue("name"), req.Compromised); err != nil {
			s.fail(w, r, err)
			return
		}
		i, err := s.o.Vault.Show(r.Context(), r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, i)
	})
	mux.HandleFunc("DELETE "+PathSecrets+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		NoteTarget(r, "", "credential "+quote(name))
		if reserved(w, name) {
			return
		}
		if s.o.Guard != nil && r.URL.Query().Get("force") != "true" {
			use, err := s.o.Guard.InUse(r.Context(), name)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if use != "" {
				s.log.Warn("admin: refused to remove a credential in use", "name", name, "use", use)
				WriteError(w, http.StatusConflict, "in_use", fmt.Sprintf("credential %q is %s: removing it breaks the venue; force the removal (keystile secret rm --force)", name, use))
				return
			}
		}
		if err := s.o.Vault.Delete(r.Context(), name); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s.mfaRoutes(mux)
	mux.HandleFunc("POST "+PathRekey, func(w http.ResponseWriter, r *http.Request) {
		res, err := s.o.Vault.Rekey(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	})
}

// fail maps a domain error to an answer. Admin callers are trusted local
// operators, so the message is the error's own text (domain errors never
// contain secret values).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, vault.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, vault.ErrCompromised):
		status, code = http.StatusConflict, "compromised"
	case errors.Is(err, vault.ErrRevoked):
		status, code = http.StatusConflict, "revoked"
	case errors.Is(err, vault.ErrIntegrity):
		status, code = http.StatusInternalServerError, "integrity"
	case errors.Is(err, ErrBadRequest):
		status, code = http.StatusBadRequest, "bad_request"
	case isValidation(err):
		status, code = http.StatusBadRequest, "invalid"
	}
	s.log.Warn("admin: request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	WriteError(w, status, code, err.Error())
}

// ErrBadRequest marks errors that are the caller's fault.
var ErrBadRequest = errors.New("bad request")

func isValidation(err error) bool {
	var ie *vault.InputError
	return errors.As(err, &ie)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes an ErrorBody.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// DecodeJSON strictly decodes the request body into v, answering 400 itself
// on failure.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", "malformed JSON request body")
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		WriteError(w, http.StatusBadRequest, "bad_request", "trailing data after JSON body")
		return false
	}
	return true
}
