package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Venue names served by the sandbox.
const (
	VenueStake   = "stake"
	VenueDMarket = "dmarket"
	VenueBetfair = "betfair"
	VenueSTAPI   = "stapi"
	VenueGeneric = "generic"
)

// AllVenues lists every venue the sandbox can emulate, in start order.
func AllVenues() []string {
	v := []string{VenueStake, VenueDMarket, VenueBetfair, VenueSTAPI, VenueGeneric}
	v = append(v, exchangesA()...)
	return append(v, exchangesB()...)
}

// ControlPrefix is the reserved path prefix of the control endpoints served on
// every venue listener (stats, faults, orders). It is never forwarded to the
// emulated venue and needs no credential.
const ControlPrefix = "/-/sandbox/"

// maxBody bounds every request body the emulators read.
const maxBody = 1 << 20

// Sentinel errors.
var (
	// ErrUnknownVenue is returned for a venue name the sandbox does not emulate.
	ErrUnknownVenue = errors.New("sandbox: unknown venue")
	// ErrClosed is returned by Close on a server that is already closed.
	ErrClosed = errors.New("sandbox: server closed")
	// ErrBadCredentials is wrapped by errors about given credentials.
	ErrBadCredentials = errors.New("sandbox: bad credentials")
	// ErrBadFault is wrapped by errors about an invalid fault.
	ErrBadFault = errors.New("sandbox: bad fault")
	// ErrPortInUse is wrapped by the error of a fixed port (PortBase)
	// that something else listens on.
	ErrPortInUse = errors.New("sandbox: port in use")
	// ErrBadPortBase is returned for a PortBase out of range.
	ErrBadPortBase = errors.New("sandbox: bad port base")
)

// MaxPortBase is the highest PortBase: every venue's port must fit.
func MaxPortBase() int { return 65535 - len(AllVenues()) + 1 }

// Port returns the port of venue for a PortBase: base plus the venue's
// index in AllVenues (stake +0, dmarket +1, betfair +2, stapi +3,
// generic +4, binance +5, kraken +6, okx +7, bybit +8, coinbase +9), so a
// venue keeps its port whichever venues run. It returns 0 for an unknown
// venue.
func Port(base int, venue string) int {
	i := slices.Index(AllVenues(), venue)
	if i < 0 {
		return 0
	}
	return base + i
}

// Options configure Start. The zero value starts every venue on 127.0.0.1
// over plain HTTP with random credentials.
type Options struct {
	// Venues to start; nil or empty means all (see AllVenues).
	Venues []string
	// ListenHost is the host each listener binds; default 127.0.0.1. Every
	// venue gets its own port: ephemeral, or see PortBase.
	ListenHost string
	// PortBase, if not 0, fixes the ports: venue v listens on
	// Port(PortBase, v). A port that is taken fails Start with an error
	// wrapping ErrPortInUse that names the venue and the port.
	PortBase int
	// TLS serves every venue over HTTPS with certificates from a fresh
	// in-memory test CA (see VenueInfo.CAPEM).
	TLS bool
	// Clock is the time source for timestamp windows and expiries; nil means
	// time.Now.
	Clock func() time.Time
	// Credentials optionally fix the credentials of a venue, keyed by venue
	// then by field name (see VenueInfo.Credentials); fields not given are
	// generated. Kraken also reads "tier" here (starter, intermediate,
	// pro: the emulator then enforces that tier's REST counter); it is a
	// setting, left out of VenueInfo.Credentials.
	Credentials map[string]map[string]string
	// BetfairSessionTTL is the lifetime of a Betfair session token (each
	// keepAlive restarts it); default 12h, the international exchange's.
	BetfairSessionTTL time.Duration
	// StapiTokenTTL is the lifetime of a STAPI OAuth access token; default 1h.
	StapiTokenTTL time.Duration
	// Logger receives one debug line per request (never header values);
	// nil discards.
	Logger *slog.Logger
	// Received, if set, is called with every request a venue receives
	// (control endpoints excluded) before it is answered, exactly as it
	// arrived: tests use it to check what reached the venue. It sees the
	// (throwaway) credentials and signatures in clear.
	Received func(Received)
}

// Received is one request as an emulated venue received it.
type Received struct {
	Venue      string
	Method     string
	Host       string // the Host header as received
	RequestURI string // path and query as sent
	Header     http.Header
	Body       []byte
}

// Info describes a running sandbox. It is meant to be printed (WriteInfo)
// and handed to keystile's configuration: it holds the sandbox credentials
// in clear text on purpose, since they are throwaway test values.
type Info struct {
	Venues map[string]VenueInfo `json:"venues"`
}

// VenueInfo describes one emulated venue.
type VenueInfo struct {
	// BaseURL is the venue's API root, e.g. http://127.0.0.1:41234.
	BaseURL string `json:"base_url"`
	// IdentityURL is the login root (Betfair only; same listener as BaseURL).
	IdentityURL string `json:"identity_url,omitempty"`
	// Credentials maps vault field names to values.
	Credentials map[string]string `json:"credentials"`
	// CAPEM is the PEM of the CA that issued the server certificate (TLS only).
	CAPEM string `json:"ca_pem,omitempty"`
}

// Stats are the counters of one venue since start.
type Stats struct {
	// Requests counts every request to the venue (control endpoints excluded),
	// including faulted ones.
	Requests int64 `json:"requests"`
	// AuthFailures counts requests refused for authentication (and failed logins).
	AuthFailures int64 `json:"auth_failures"`
	// Orders counts accepted order placements (one per order, so a batch of
	// three Betfair instructions counts three).
	Orders int64 `json:"orders"`
	// Cancels counts orders cancelled.
	Cancels int64 `json:"cancels"`
	// Logins counts login or token requests (Betfair login/certlogin, STAPI
	// /oauth/token), successful or not.
	Logins int64 `json:"logins"`
	// FaultsInjected counts requests a fault was applied to.
	FaultsInjected int64 `json:"faults_injected"`
	// Operations counts requests per operation name, authenticated or not.
	Operations map[string]int64 `json:"operations"`
}

// Order is an order (or the venue's equivalent) the emulator accepted.
type Order struct {
	ID            string `json:"id"`
	ClientOrderID string `json:"client_order_id,omitempty"`
	Instrument    string `json:"instrument,omitempty"`
	Side          string `json:"side,omitempty"`
	Price         string `json:"price,omitempty"`
	Size          string `json:"size,omitempty"`
	// Category is the venue's product line where it has several (Bybit:
	// spot, linear, inverse, option).
	Category string    `json:"category,omitempty"`
	Status   string    `json:"status"` // OrderOpen or OrderCancelled
	Placed   time.Time `json:"placed"`
}

// Order statuses.
const (
	OrderOpen      = "open"
	OrderCancelled = "cancelled"
)

// Server runs the emulators. It is safe for concurrent use.
type Server struct {
	clock  func() time.Time
	log    *slog.Logger
	pki    *testPKI
	order  []string
	venues map[string]*venueServer

	closeOnce sync.Once
	stopCtx   func() bool
}

// emulator is one venue's behaviour behind the shared plumbing.
type emulator interface {
	// serve answers an authenticated-or-not request whose body is read.
	serve(w http.ResponseWriter, r *http.Request, body []byte)
	// credentialHeaders lists the request headers that carry credentials.
	credentialHeaders() []string
	// expireSessions invalidates every session or token now.
	expireSessions()
	// credentials returns the venue's credential fields.
	credentials() map[string]string
}

// venueServer is the shared plumbing of one emulator: listener, counters,
// order book and fault queue.
type venueServer struct {
	name    string
	baseURL string
	ln      net.Listener
	srv     *http.Server
	emu     emulator
	log     *slog.Logger
	clock   func() time.Time
	seen    func(Received) // Options.Received

	mu     sync.Mutex
	stats  Stats
	faults []*queuedFault
	orders []*Order
	seq    int64
}

// Start starts one loopback listener per venue and serves the emulators until
// Close is called or ctx is done.
func Start(ctx context.Context, o Options) (*Server, error) {
	venues := o.Venues
	if len(venues) == 0 {
		venues = AllVenues()
	}
	for v := range o.Credentials {
		if !slices.Contains(AllVenues(), v) {
			return nil, fmt.Errorf("%w: credentials for %q", ErrUnknownVenue, v)
		}
	}
	host := o.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	if o.PortBase < 0 || o.PortBase > MaxPortBase() {
		return nil, fmt.Errorf("%w: %d (want 1-%d, or 0 for ephemeral ports)", ErrBadPortBase, o.PortBase, MaxPortBase())
	}
	s := &Server{
		clock:  o.Clock,
		log:    o.Logger,
		venues: make(map[string]*venueServer),
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if o.TLS {
		pki, err := newTestPKI(s.clock())
		if err != nil {
			return nil, err
		}
		s.pki = pki
	}
	for _, name := range venues {
		if _, dup := s.venues[name]; dup {
			continue
		}
		vs, err := s.startVenue(name, host, o)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.venues[name] = vs
		s.order = append(s.order, name)
	}
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

func (s *Server) startVenue(name, host string, o Options) (*venueServer, error) {
	vs := &venueServer{
		name:  name,
		log:   s.log.With("venue", name),
		clock: s.clock,
		stats: Stats{Operations: map[string]int64{}},
		seen:  o.Received,
	}
	creds := o.Credentials[name]
	var err error
	switch name {
	case VenueStake:
		vs.emu, err = newStake(vs, creds)
	case VenueDMarket:
		vs.emu, err = newDMarket(vs, creds)
	case VenueBetfair:
		vs.emu, err = newBetfair(vs, creds, o.BetfairSessionTTL, s.pki)
	case VenueSTAPI:
		vs.emu, err = newSTAPI(vs, creds, o.StapiTokenTTL)
	case VenueGeneric:
		vs.emu, err = newGeneric(vs, creds)
	default:
		var ok bool
		if vs.emu, ok, err = newExchangeA(name, vs, creds); !ok && err == nil {
			vs.emu, ok, err = newExchangeB(name, vs, creds)
		}
		if !ok && err == nil {
			return nil, fmt.Errorf("%w: start %q", ErrUnknownVenue, name)
		}
	}
	if err != nil {
		return nil, err
	}
	port := 0
	if o.PortBase > 0 {
		port = Port(o.PortBase, name)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: %s needs %s:%d (port base %d + %d), which something else listens on",
			ErrPortInUse, name, host, port, o.PortBase, port-o.PortBase)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen %s: %w", name, err)
	}
	scheme := "http"
	vs.srv = &http.Server{
		Handler:           vs,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(vs.log.Handler(), slog.LevelDebug),
	}
	if s.pki != nil {
		scheme = "https"
		vs.srv.TLSConfig = s.pki.serverConfig()
		// HTTP/1.1 only, so that the reset faults can hijack the connection.
		vs.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		ln = tls.NewListener(ln, vs.srv.TLSConfig)
	}
	vs.ln = ln
	vs.baseURL = scheme + "://" + ln.Addr().String()
	go func() { _ = vs.srv.Serve(ln) }()
	return vs, nil
}

// Close stops every listener. Open connections are closed.
func (s *Server) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		err = nil
		if s.stopCtx != nil {
			s.stopCtx()
		}
		for _, name := range s.order {
			if e := s.venues[name].srv.Close(); e != nil && err == nil {
				err = fmt.Errorf("sandbox: close %s: %w", name, e)
			}
		}
	})
	return err
}

// Info returns the URLs and credentials of every running venue.
func (s *Server) Info() Info {
	info := Info{Venues: make(map[string]VenueInfo, len(s.venues))}
	for name, vs := range s.venues {
		vi := VenueInfo{BaseURL: vs.baseURL, Credentials: vs.emu.credentials()}
		if name == VenueBetfair {
			vi.IdentityURL = vs.baseURL
		}
		if s.pki != nil {
			vi.CAPEM = string(s.pki.caPEM)
		}
		info.Venues[name] = vi
	}
	return info
}

// WriteInfo writes Info as one line of JSON.
func (s *Server) WriteInfo(w io.Writer) error {
	b, err := json.Marshal(s.Info())
	if err != nil {
		return fmt.Errorf("sandbox: encode info: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("sandbox: write info: %w", err)
	}
	return nil
}

// CAPEM returns the PEM of the test CA, or nil without TLS.
func (s *Server) CAPEM() []byte {
	if s.pki == nil {
		return nil
	}
	return slices.Clone(s.pki.caPEM)
}

// Stats returns a copy of a venue's counters; an unknown venue gives zero Stats.
func (s *Server) Stats(venue string) Stats {
	vs, ok := s.venues[venue]
	if !ok {
		return Stats{Operations: map[string]int64{}}
	}
	return vs.snapshot()
}

// Orders returns a copy of the orders a venue accepted, oldest first.
func (s *Server) Orders(venue string) []Order {
	vs, ok := s.venues[venue]
	if !ok {
		return nil
	}
	vs.mu.Lock()
	defer vs.mu.Unlock()
	out := make([]Order, len(vs.orders))
	for i, o := range vs.orders {
		out[i] = *o
	}
	return out
}

// AddOrders puts orders in a venue's book as if it had accepted them (no
// request, no rate limit), for tests that need many open orders (paging).
// Each gets a fresh venue id (idPrefix, as the venue's own ids look, then
// a sequence number), status open and the placement time now; the copies
// are returned.
func (s *Server) AddOrders(venue, idPrefix string, orders []Order) ([]Order, error) {
	vs, ok := s.venues[venue]
	if !ok {
		return nil, fmt.Errorf("%w: add orders on %q", ErrUnknownVenue, venue)
	}
	out := make([]Order, 0, len(orders))
	for _, o := range orders {
		out = append(out, vs.addOrder(idPrefix, o))
	}
	return out, nil
}

// InjectFault queues a fault on a venue; it applies to the next matching
// requests (expire_sessions applies at once).
func (s *Server) InjectFault(venue string, f Fault) error {
	vs, ok := s.venues[venue]
	if !ok {
		return fmt.Errorf("%w: inject fault on %q", ErrUnknownVenue, venue)
	}
	return vs.inject(f)
}

// ClearFaults drops every queued fault of a venue.
func (s *Server) ClearFaults(venue string) error {
	vs, ok := s.venues[venue]
	if !ok {
		return fmt.Errorf("%w: clear faults on %q", ErrUnknownVenue, venue)
	}
	vs.mu.Lock()
	vs.faults = nil
	vs.mu.Unlock()
	return nil
}

func (vs *venueServer) snapshot() Stats {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	st := vs.stats
	st.Operations = make(map[string]int64, len(vs.stats.Operations))
	for k, v := range vs.stats.Operations {
		st.Operations[k] = v
	}
	return st
}

// count records one request for operation op.
func (vs *venueServer) count(op string) {
	vs.mu.Lock()
	vs.stats.Operations[op]++
	vs.mu.Unlock()
}

func (vs *venueServer) authFailure() {
	vs.mu.Lock()
	vs.stats.AuthFailures++
	vs.mu.Unlock()
}

func (vs *venueServer) login() {
	vs.mu.Lock()
	vs.stats.Logins++
	vs.mu.Unlock()
}

// addOrder stores an accepted order and returns it (a copy).
func (vs *venueServer) addOrder(idPrefix string, o Order) Order {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.seq++
	o.ID = fmt.Sprintf("%s%d", idPrefix, 1000000+vs.seq)
	o.Status = OrderOpen
	o.Placed = vs.clock().UTC()
	vs.orders = append(vs.orders, &o)
	vs.stats.Orders++
	return o
}

// cancelOrder cancels an open order by id; it reports whether one was.
func (vs *venueServer) cancelOrder(id string) (Order, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for _, o := range vs.orders {
		if o.ID == id && o.Status == OrderOpen {
			o.Status = OrderCancelled
			vs.stats.Cancels++
			return *o, true
		}
	}
	return Order{}, false
}

// openOrders returns copies of the open orders, oldest first.
func (vs *venueServer) openOrders() []Order {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	var out []Order
	for _, o := range vs.orders {
		if o.Status == OrderOpen {
			out = append(out, *o)
		}
	}
	return out
}

// ServeHTTP routes control requests, applies faults, reads the body and hands
// the request to the emulator.
func (vs *venueServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ControlPrefix) {
		vs.control(w, r)
		return
	}
	vs.mu.Lock()
	vs.stats.Requests++
	vs.mu.Unlock()
	fault, echo := vs.takeFaults(r.URL.Path)
	vs.log.Debug("sandbox request", "method", r.Method, "path", r.URL.Path, "fault", fault.Kind, "echo", echo)

	switch fault.Kind {
	case FaultReset:
		resetConn(w)
		return
	case FaultStatus:
		writeJSON(w, fault.Status, map[string]string{"message": "sandbox: injected " + http.StatusText(fault.Status)})
		return
	case FaultRateLimit:
		w.Header().Set("Retry-After", fmt.Sprint(fault.RetryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"message": "sandbox: injected rate limit"})
		return
	case FaultDelay:
		t := time.NewTimer(time.Duration(fault.Delay))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"message": "request body too large"})
		return
	}
	if vs.seen != nil {
		vs.seen(Received{Venue: vs.name, Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: bytes.Clone(body)})
	}
	if fault.Kind == FaultSlowProcess {
		// The venue has the request and processes it whether or not
		// the client is still waiting.
		time.Sleep(time.Duration(fault.Delay))
	}
	if fault.Kind != FaultResetAfterRead && !echo {
		vs.emu.serve(w, r, body)
		return
	}
	bw := &bufferedWriter{h: http.Header{}}
	vs.emu.serve(bw, r, body)
	if fault.Kind == FaultResetAfterRead {
		resetConn(w)
		return
	}
	vs.writeEcho(w, r, bw)
}

// writeEcho writes a buffered response after copying the request's credential
// headers into response headers (X-Sandbox-Echo-<name>) and, for a JSON
// object body, into a top-level "sandbox_echo" member.
func (vs *venueServer) writeEcho(w http.ResponseWriter, r *http.Request, bw *bufferedWriter) {
	echoed := map[string]string{}
	for _, h := range vs.emu.credentialHeaders() {
		if v := r.Header.Get(h); v != "" {
			echoed[h] = v
			bw.h.Set("X-Sandbox-Echo-"+h, v)
		}
	}
	body := bw.buf.Bytes()
	if t := bytes.TrimSpace(body); len(t) > 1 && t[0] == '{' {
		e, _ := json.Marshal(echoed) // #nosec G104 -- map[string]string always marshals
		rest := bytes.TrimSpace(t[1:])
		nb := append([]byte(`{"sandbox_echo":`), e...)
		if len(rest) > 0 && rest[0] != '}' {
			nb = append(nb, ',')
		}
		body = append(nb, rest...)
	}
	for k, v := range bw.h {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	code := bw.code
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// resetConn hijacks the connection and closes it with a TCP RST, without
// writing a response.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := c
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}

// bufferedWriter collects a response so it can be rewritten or discarded.
type bufferedWriter struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.h }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.buf.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

var _ http.ResponseWriter = (*bufferedWriter)(nil)
var _ http.Handler = (*venueServer)(nil)

// writeJSON writes v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"message":"sandbox: encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// randHex returns n random bytes, hex-encoded.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// isHex reports whether s is n lowercase-or-uppercase hex characters.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ReadCredentials decodes a JSON credentials file
// ({"venue":{"field":"value"}}) for Options.Credentials.
func ReadCredentials(r io.Reader) (map[string]map[string]string, error) {
	var c map[string]map[string]string
	dec := json.NewDecoder(io.LimitReader(r, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: read credentials: %w", ErrBadCredentials, err)
	}
	return c, nil
}

// SDKHosts returns the real hosts an unmodified SDK of venue dials (ccxt's
// default URLs, the official connectors'): keystile's forward proxy routes
// their CONNECTs to the emulator when the sandbox venue lists them in
// proxy_hosts. Venues without a public SDK host have none.
func SDKHosts(venue string) []string {
	switch venue {
	case VenueBinance:
		return []string{"api.binance.com", "fapi.binance.com", "dapi.binance.com"}
	case VenueKraken:
		return []string{"api.kraken.com"}
	case VenueOKX:
		return []string{"www.okx.com"}
	case VenueBybit:
		return []string{"api.bybit.com"}
	case VenueCoinbase:
		return []string{"api.coinbase.com"}
	case VenueBetfair:
		return []string{"api.betfair.com"}
	}
	return nil
}
