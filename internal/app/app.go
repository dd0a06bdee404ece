package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/buildinfo"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/console"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/fwdproxy"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/metrics"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"os/signal"
)

// Version is the keystile version, set at build time with
// -ldflags "-X github.com/keystile/keystile/internal/app.Version=...".
var Version = devVersion //nolint:gochecknoglobals // build-time constant

const devVersion = "0.1.0-dev"

// Build describes the running binary (Version, module and VCS stamps).
func Build() buildinfo.Info { return buildinfo.Read(Version, devVersion) }

// metaMasterKey is the vault metadata key holding masterkey.Params.
const metaMasterKey = "master_key"

// ErrAlreadyInitialized is returned by Init on an initialised data dir.
var ErrAlreadyInitialized = errors.New("keystile is already initialised here; refusing to overwrite")

// Env is what the process gives the app: environment and terminal.
type Env struct {
	Getenv func(string) string
	// Prompt reads a line without echo; nil when there is no terminal.
	Prompt func(prompt string) ([]byte, error)
	// Keyring is the OS keyring; nil means masterkey.OSKeyring.
	Keyring masterkey.Keyring
	Stderr  io.Writer
}

func (e Env) keyring() masterkey.Keyring {
	if e.Keyring != nil {
		return e.Keyring
	}
	return masterkey.OSKeyring{}
}

// InitOptions configure Init.
type InitOptions struct {
	DataDir   string
	Source    string // master key source; "" = file
	Config    *config.Config
	KDF       *masterkey.KDFParams // tests use a cheap one
	WriteYAML bool                 // write a starter keystile.yaml into the data dir
}

// InitResult reports what Init created.
type InitResult struct {
	DataDir string `json:"data_dir"`
	DB      string `json:"database"`
	Source  string `json:"master_key_source"`
	KeyFile string `json:"key_file,omitempty"`
	Config  string `json:"config,omitempty"`
	// LocalCA is the local CA's certificate file (its key is in the vault).
	LocalCA string `json:"local_ca,omitempty"`
}

// Init creates a data directory (0700), a master key from the chosen source,
// and an initialised database. It refuses to touch an existing keystile
// data dir.
func Init(ctx context.Context, env Env, o InitOptions) (InitResult, error) {
	if o.Source == "" {
		o.Source = masterkey.SourceFile
	}
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	dir := o.DataDir
	res := InitResult{DataDir: dir, DB: filepath.Join(dir, DBFile), Source: o.Source}
	valid := false
	for _, s := range masterkey.Sources {
		valid = valid || s == o.Source
	}
	if !valid {
		return res, masterkey.ErrUnknownSource
	}
	shared := cfg.Store.Shared()
	if shared {
		res.DB = "" // set below: the PostgreSQL server
	}
	for _, f := range []string{DBFile, KeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return res, fmt.Errorf("%w (%s exists)", ErrAlreadyInitialized, filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory needs x; 0700 is owner-only
		return res, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	keyFile := cfg.MasterKey.File
	switch {
	case keyFile == "":
		keyFile = filepath.Join(dir, KeyFile)
	case !filepath.IsAbs(keyFile):
		keyFile = filepath.Join(dir, keyFile) // as ResolveKeyFile reads it
	}
	mo := masterkey.Options{
		Source: o.Source, KeyFile: keyFile, PassphraseFile: cfg.MasterKey.PassphraseFile,
		Getenv: env.Getenv, Prompt: env.Prompt, Keyring: env.keyring(),
		KeyringService: cfg.MasterKey.KeyringService, KeyringUser: "master-key:" + dir, KDF: o.KDF,
	}
	if o.Source != masterkey.SourceKeyring {
		mo.Keyring = nil
	}
	root, params, err := masterkey.Create(ctx, mo)
	if err != nil {
		return res, err
	}
	defer root.Wipe()
	if params.Source == masterkey.SourceFile {
		// Relative to the data dir when inside it: a copied, moved or
		// restored data dir uses its own key file.
		params.KeyFile = recordKeyPath(dir, keyFile)
	}
	if params.Source == masterkey.SourceFile {
		res.KeyFile = keyFile
	}
	cleanup := func() {
		for _, f := range []string{DBFile, DBFile + "-wal", DBFile + "-shm", LocalCAFile} {
			_ = os.Remove(filepath.Join(dir, f))
		}
		if params.Source == masterkey.SourceFile {
			_ = os.Remove(keyFile)
		}
	}
	// With PostgreSQL the schema is brought up to date here: init is the
	// first command of a new installation.
	db, err := OpenStores(ctx, env, cfg, dir, StoreOptions{Create: true, Migrate: true})
	if err != nil {
		cleanup()
		return res, err
	}
	if shared {
		res.DB = db.status(ctx).Path
	}
	pj, _ := json.Marshal(params)
	if err := vault.Initialize(ctx, db.Vault(), root, map[string][]byte{metaMasterKey: pj}, time.Now()); err != nil {
		_ = db.Close()
		cleanup()
		if shared && errors.Is(err, store.ErrExists) {
			return res, fmt.Errorf("%w: the PostgreSQL database already holds a vault; for another replica, copy the first one's data dir files (master key, local-ca.pem) instead of running init", ErrAlreadyInitialized)
		}
		return res, err
	}
	// The local CA (forward proxy, gateway TLS): its key sealed in the
	// vault just made, its certificate next to the data.
	if err := initLocalCA(ctx, db, root, dir, cfg); err != nil {
		_ = db.Close()
		cleanup()
		return res, err
	}
	res.LocalCA = filepath.Join(dir, LocalCAFile)
	if err := db.Close(); err != nil {
		return res, err
	}
	if o.WriteYAML {
		p := filepath.Join(dir, ConfigFile)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- data dir
		if err == nil {
			_, _ = fmt.Fprintf(f, starterYAML, o.Source)
			_ = f.Close()
			res.Config = p
		}
	}
	return res, nil
}

const starterYAML = `# keystile configuration. Every key is documented in the README.
# Secrets never go here: only names of credentials held in the vault.
log:
  level: info
  format: text
master_key:
  source: %s
gateway:
  listen: 127.0.0.1:7878
tokens:
  default_ttl: 24h
  max_ttl: 720h
# venues:
#   dmarket:
#     type: dmarket
#     credential: dmarket-main
#     base_url: https://api.dmarket.com
`

// OpenVault opens the database and the vault of an initialised data dir,
// loading the master key the way init recorded. The caller closes both.
func OpenVault(ctx context.Context, env Env, dataDir string, cfg *config.Config, log *slog.Logger, redactor *logging.Redactor) (Stores, *vault.Vault, error) {
	return openVault(ctx, env, dataDir, cfg, log, redactor, StoreOptions{})
}

// openVault is OpenVault with store options (serve migrates when told).
func openVault(ctx context.Context, env Env, dataDir string, cfg *config.Config, log *slog.Logger, redactor *logging.Redactor,
	so StoreOptions) (Stores, *vault.Vault, error) {
	if err := CheckDataDirFor(dataDir, cfg); err != nil {
		return nil, nil, err
	}
	db, err := OpenStores(ctx, env, cfg, dataDir, so)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (Stores, *vault.Vault, error) {
		_ = db.Close()
		return nil, nil, err
	}
	pj, err := db.Vault().Meta(ctx, metaMasterKey)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", vault.ErrNotInitialized, err))
	}
	var params masterkey.Params
	if err := json.Unmarshal(pj, &params); err != nil {
		return fail(fmt.Errorf("app: stored master key parameters: %w", err))
	}
	mo := masterkey.Options{
		PassphraseFile: cfg.MasterKey.PassphraseFile,
		Getenv:         env.Getenv, Prompt: env.Prompt, Keyring: env.keyring(),
	}
	if params.Source == masterkey.SourceFile {
		if mo.KeyFile, err = ResolveKeyFile(dataDir, cfg.MasterKey.File, params.KeyFile); err != nil {
			return fail(err)
		}
	}
	root, err := masterkey.Load(ctx, mo, params)
	if err != nil {
		return fail(err)
	}
	defer root.Wipe()
	vo := vault.Options{Store: db.Vault(), RootKey: root, Logger: log}
	if redactor != nil {
		vo.Observe = func(v secret.Value) { redactor.Register(v) }
	}
	v, err := vault.Open(ctx, vo)
	if err != nil {
		return fail(err)
	}
	return db, v, nil
}

// DisableCoreDumps makes the process non-dumpable and sets RLIMIT_CORE to 0
// so that a crash cannot write secrets to a core file.
func DisableCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("app: RLIMIT_CORE: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("app: PR_SET_DUMPABLE: %w", err)
	}
	return nil
}

// Server is a running `keystile serve`.
type Server struct {
	cfg      *config.Config
	dataDir  string
	log      *slog.Logger
	redactor *logging.Redactor
	db       Stores
	// storeUp is the last readiness ping's result; replicaID names this
	// replica; redis reports Redis's state (nil without store.redis).
	storeUp   atomic.Bool
	replicaID string
	redis     func() *admin.RedisStatus
	scale     scaleOut
	vault     *vault.Vault
	tokens    *token.Service
	admin     *admin.Server
	gateway   *gateway.Gateway
	httpSrv   *http.Server
	ln        []net.Listener
	started   time.Time
	policy    *policy.Engine
	idem      *idem.Manager
	audit     AuditLog
	ledger    ledger.Store
	intents   gateway.Intents // the audit log when it is not the ledger's
	kill      *killswitch.Switch
	loss      *killswitch.LossGuard // nil without loss guards
	detect    *detect.Detector
	// events is where the gateway and the forward proxy send their
	// events (audit log, text log, metrics, console, loss guard, detector).
	events  events
	cfgPath string

	// cfgNow is the configuration in force (see Config); venues are the
	// running venues by id. reloadMu serialises reloads and guards
	// venues and restart.
	metrics    *metrics.Metrics
	metricsLn  net.Listener // nil unless metrics.listen is set
	metricsSrv *http.Server

	// alerts delivers alerts to the configured sinks (alerts.go);
	// alertEnv resolves their secret references again on reload.
	alerts   *alert.Dispatcher
	alertEnv Env

	// The web console (console.listen; nil when off): the stats it
	// shows, fed by the gateway's events, and its kill switch.
	console *console.Console
	stats   *console.Stats
	mfa     *mfa.Manager

	cfgNow   atomic.Pointer[config.Config]
	reloadMu sync.Mutex
	venues   map[string]builtVenue
	restart  []string

	// The local CA (nil if none is loaded; guarded by caMu), and the
	// forward proxy (nil unless proxy.listen is set).
	caMu    sync.Mutex
	ca      *localca.CA
	proxy   *fwdproxy.Proxy
	proxyLn net.Listener
}

// GatewayAddr is the gateway's TCP address ("" if it listens on none).
func (s *Server) GatewayAddr() string {
	for _, l := range s.ln {
		if l.Addr().Network() == "tcp" {
			return l.Addr().String()
		}
	}
	return ""
}

// ServerOptions configure NewServer.
type ServerOptions struct {
	// ConfigPath is the file Config came from; policies are reloaded from
	// it on SIGHUP and when it changes. "" disables reloading.
	ConfigPath string
	DataDir    string
	Config     *config.Config
	Logger     *slog.Logger
	Redactor   *logging.Redactor
	// Now is the admin second factor's clock; if nil, time.Now.
	Now func() time.Time
	// Migrate applies pending PostgreSQL migrations before serving
	// (serve --migrate); store.postgres.migrate_on_start does the same.
	Migrate bool
}

// NewServer builds every subsystem of serve without starting to serve.
func NewServer(ctx context.Context, env Env, o ServerOptions) (*Server, error) {
	s := &Server{cfg: o.Config, dataDir: o.DataDir, log: o.Logger, redactor: o.Redactor, started: time.Now(), cfgPath: o.ConfigPath}
	db, v, err := openVault(ctx, env, o.DataDir, o.Config, o.Logger, o.Redactor,
		StoreOptions{Migrate: o.Migrate || o.Config.Store.Postgres.MigrateOnStart})
	if err != nil {
		return nil, err
	}
	s.db, s.vault = db, v
	s.replicaID = replicaName(o.Config)
	if err := s.openFanout(ctx, env, o.Config); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	s.tokens, err = token.New(ctx, token.Options{Store: db.Tokens(), DefaultTTL: o.Config.Tokens.DefaultTTL,
		MaxTTL: o.Config.Tokens.MaxTTL, Logger: o.Logger})
	if err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	s.cfgNow.Store(o.Config)
	if err := s.newAlerts(env, o.Config.Alerts); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	s.venues = map[string]builtVenue{}
	var venues []gateway.Venue
	for _, id := range sortedVenueIDs(o.Config) {
		b, err := buildVenue(id, o.Config.Venues[id], v, db, o.Logger)
		if err != nil {
			s.closeStores(ctx)
			return nil, err
		}
		b = s.sharedLimits(id, b)
		s.venues[id] = b
		venues = append(venues, b.gv)
	}
	s.metrics = s.newMetrics()
	if o.Config.Console.Listen != "" {
		s.stats = console.NewStats(nil)
	}
	if err := s.openOrderPath(ctx, v, db, o.Config, o.DataDir); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	if err := s.openLocalCA(ctx); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	if err := s.openKillSwitch(ctx, o.Config); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	venues = venues[:0]
	for _, id := range sortedVenueIDs(o.Config) {
		s.venues[id] = s.gated(id, s.venues[id])
		venues = append(venues, s.venues[id].gv)
	}
	if err := s.openDetector(ctx, v, db, o.Config); err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	var scrub gateway.Scrubber
	if o.Redactor != nil {
		scrub = o.Redactor
	}
	ev := events{log: s.audit, text: audit.LogSink{Logger: o.Logger}, metrics: s.metrics, console: s.consoleSink(), detect: s.detect}
	if s.loss != nil {
		ev.loss = s.loss
	}
	s.events = ev
	s.gateway, err = gateway.New(gateway.Options{
		Tokens: s.kill.Guard(s.tokens), Venues: venues, Events: ev, OnRetry: s.metrics.OnRetry, Scrubber: scrub,
		MaxBodyBytes: o.Config.Gateway.MaxBodyBytes, Logger: o.Logger, Kill: s.kill, Guard: s.detect,
		Policy: s.policy, Idem: s.idem, Ledger: s.ledger, Intents: s.intents,
		Ready: s.ready, Health: s.health,
	})
	if err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	g := o.Config.Gateway
	s.httpSrv = s.gateway.Server(gateway.ServerOptions{ReadHeaderTimeout: g.ReadHeaderTimeout, ReadTimeout: g.ReadTimeout,
		WriteTimeout: g.WriteTimeout, IdleTimeout: g.IdleTimeout, MaxHeaderBytes: g.MaxHeaderBytes})
	gwTLS, err := s.gatewayTLS(ctx, env)
	if err != nil {
		s.closeStores(ctx)
		return nil, err
	}
	if g.Listen != "" {
		ln, err := net.Listen("tcp", g.Listen)
		if err != nil {
			s.closeStores(ctx)
			return nil, fmt.Errorf("gateway: listen %s: %w", g.Listen, err)
		}
		if gwTLS != nil {
			ln = tls.NewListener(ln, gwTLS)
		}
		s.ln = append(s.ln, ln)
	}
	if err := s.openProxy(); err != nil {
		s.closeListeners()
		s.closeStores(ctx)
		return nil, err
	}
	if g.UnixSocket != "" {
		_ = os.Remove(g.UnixSocket)
		old := syscall.Umask(0o117)
		ln, err := net.Listen("unix", g.UnixSocket)
		syscall.Umask(old)
		if err != nil {
			s.closeListeners()
			s.closeStores(ctx)
			return nil, fmt.Errorf("gateway: listen %s: %w", g.UnixSocket, err)
		}
		s.ln = append(s.ln, ln)
	}
	s.registerMetrics(s.metrics)
	if l := o.Config.Metrics.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			s.closeListeners()
			s.closeStores(ctx)
			return nil, fmt.Errorf("metrics: listen %s: %w", l, err)
		}
		s.metricsLn = ln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics.Handler())
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)}
	}
	sock := o.Config.Admin.Socket
	if sock == "" {
		sock = filepath.Join(o.DataDir, SocketFile)
	}
	mfaMgr, err := newMFA(o.Config, db, v, s.audit, o.Logger, o.Now)
	if err != nil {
		s.closeListeners()
		s.closeStores(ctx)
		return nil, err
	}
	tcp, err := adminTCP(o.Config)
	if err != nil {
		s.closeListeners()
		s.closeStores(ctx)
		return nil, err
	}
	// Admin writes: one audit record each (durable log and text log), also
	// fed to the detector (admin actions at unusual hours).
	adminAudit := adminEvents{log: s.audit, text: audit.LogSink{Logger: o.Logger}, detect: s.detect}
	as, err := admin.Listen(admin.Options{
		Socket: sock, AllowedUIDs: o.Config.Admin.AllowedUIDs, Vault: v, Logger: o.Logger,
		MFA: mfaMgr, MFAIssuer: mfaIssuer(o.Config), TCP: tcp,
		Guard: credentialGuard{cfg: s.Config, tokens: s.tokens},
		Extra: func(mux *http.ServeMux) {
			admin.TokenRoutes(mux, auditedTokens{Tokens: policyTokens{Service: s.tokens, engine: s.policy, cfg: s.Config}, log: s.audit}, o.Logger)
			admin.AlertRoutes(mux, s.alerts, o.Logger)
			admin.KillSwitchRoutes(mux, s.kill, func(v string) bool { _, ok := s.Config().Venues[v]; return ok }, o.Logger)
			mux.HandleFunc("POST "+admin.PathOAuth+"/{venue}/login", oauthLogin(s.Config, v, o.Logger))
			s.caRoutes(mux)
			admin.DetectRoutes(mux, s.detect, o.Logger)
		},
		Status: s.status, Audit: adminAudit, Events: adminAudit,
	})
	if err != nil {
		s.closeListeners()
		s.closeStores(ctx)
		return nil, err
	}
	s.admin = as
	s.mfa = mfaMgr
	if o.Config.Console.Listen != "" {
		if s.console, err = s.newConsole(ctx, o.Config); err != nil {
			_ = as.Shutdown(ctx)
			s.closeListeners()
			s.closeStores(ctx)
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, l := range s.ln {
		_ = l.Close()
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close()
	}
	if s.proxyLn != nil {
		_ = s.proxyLn.Close()
	}
}

// MetricsAddr is the metrics listener's address ("" if none).
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// Run serves until ctx is cancelled, then shuts down in order.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 3+len(s.ln))
	go func() { errc <- s.admin.Serve() }()
	for _, ln := range s.ln {
		go func() {
			if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if s.metricsSrv != nil {
		go func() {
			if err := s.metricsSrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if s.proxy != nil {
		go func() {
			if err := s.proxy.Serve(s.proxyLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if s.console != nil {
		go func() {
			if err := s.console.Serve(); err != nil {
				errc <- err
			}
		}()
	}
	kctx, stopKill := context.WithCancel(ctx)
	defer stopKill()
	go s.kill.Run(kctx)
	watching := s.watchChanges(kctx)
	if s.loss != nil {
		go s.loss.Run(kctx)
	}
	flush := time.NewTicker(30 * time.Second)
	defer flush.Stop()
	// SIGHUP reloads venues and policies; without a config file there is nothing
	// to reload, but SIGHUP (systemctl reload) must not kill serve either.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if s.cfgPath != "" {
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go func() {
			if err := policy.Watch(wctx, policy.WatchOptions{Path: s.cfgPath, Engine: s.policy, Signals: hup, Logger: s.log, Load: s.reload}); err != nil && wctx.Err() == nil {
				s.log.Error("keystile: configuration reloading stopped", "err", err)
			}
		}()
	}
	s.log.Info("keystile: serving", "version", Version, "data_dir", s.dataDir, "gateway", s.GatewayAddr(), "metrics", s.MetricsAddr(), "admin_listen", s.admin.TCPAddr(), "proxy", s.ProxyAddr(), "console", s.ConsoleURL())
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-flush.C:
			if err := s.vault.FlushUsage(ctx); err != nil {
				s.log.Warn("keystile: record credential usage", "err", err)
			}
			if err := s.tokens.FlushUsage(ctx); err != nil {
				s.log.Warn("keystile: record token usage", "err", err)
			}
		}
	}
	s.log.Info("keystile: shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if s.proxy != nil {
		if err := s.proxy.Shutdown(sctx); err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := s.httpSrv.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.admin.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Shutdown(sctx)
	}
	if s.console != nil {
		_ = s.console.Shutdown(sctx)
	}
	if s.stats != nil {
		s.stats.Close()
	}

	stopKill()
	for _, w := range watching {
		<-w
	}
	s.closeStores(sctx)
	s.log.Info("keystile: stopped")
	return runErr
}

func (s *Server) closeStores(ctx context.Context) {
	// The detector closes first: it analyses what is queued, writes its
	// last detect records to the audit log and saves its profiles (its
	// last alerts still reach the dispatcher).
	if s.detect != nil {
		if err := s.detect.Close(ctx); err != nil {
			s.log.Warn("keystile: close detector", "err", err)
		}
	}
	// Alerts next: queued ones get a few seconds, and pending digest
	// items are in the database, which closes last.
	s.closeAlerts(ctx)
	// The audit log closes next: its final checkpoint is signed with a
	// key derived from the vault, and the gateway no longer writes to it.
	if s.audit != nil {
		if err := s.audit.Close(ctx); err != nil {
			s.log.Warn("keystile: close audit log", "err", err)
		}
	}
	if s.idem != nil {
		if err := s.idem.Close(); err != nil {
			s.log.Warn("keystile: close idempotency", "err", err)
		}
	}
	s.reloadMu.Lock()
	for id, b := range s.venues {
		if b.closer == nil {
			continue
		}
		if err := b.closer.Close(ctx); err != nil {
			s.log.Warn("keystile: close venue session", "venue", id, "err", err)
		}
	}
	s.venues = nil
	s.reloadMu.Unlock()
	if s.tokens != nil {
		if err := s.tokens.FlushUsage(ctx); err != nil {
			s.log.Warn("keystile: record token usage", "err", err)
		}
	}
	if s.vault != nil {
		if err := s.vault.Close(ctx); err != nil {
			s.log.Warn("keystile: close vault", "err", err)
		}
	}
	s.closeScale()
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			s.log.Warn("keystile: close database", "err", err)
		}
	}
}
