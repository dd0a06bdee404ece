package config

import "time"

// Config is the whole of keystile.yaml. Field comments name the YAML key,
// the default (see Default) and the accepted values.
type Config struct {
	// DataDir (data_dir) is the directory holding the database, the admin
	// socket and the key file. "" means: $KEYSTILE_DATA_DIR, else
	// $XDG_DATA_HOME/keystile, else ~/.local/share/keystile — resolved by
	// the CLI, not by this package.
	DataDir string `yaml:"data_dir"`
	// Log (log) configures the server's own logs.
	Log Log `yaml:"log"`
	// MasterKey (master_key) says where the vault's key-encryption key comes from.
	MasterKey MasterKey `yaml:"master_key"`
	// Admin (admin) configures the admin API used by the CLI.
	Admin Admin `yaml:"admin"`
	// Gateway (gateway) configures the bot-facing listener.
	Gateway Gateway `yaml:"gateway"`
	// Tokens (tokens) bounds client token lifetimes.
	Tokens Tokens `yaml:"tokens"`
	// Venues (venues) maps a venue id to its upstream. The id is the first
	// path segment bots use: http://127.0.0.1:7878/<id>/... It must match
	// [a-z0-9][a-z0-9_-]{0,31}.
	Venues map[string]Venue `yaml:"venues"`
	// Policies (policies) maps a policy name to what tokens attached to it
	// may do (see Policy). Tokens name their policy; a token without one
	// uses policies.default, else the built-in default.
	Policies map[string]Policy `yaml:"policies"`
	// Audit (audit) configures the tamper-evident audit log.
	Audit Audit `yaml:"audit"`
	// Idempotency (idempotency) configures order de-duplication.
	Idempotency Idempotency `yaml:"idempotency"`
	// Metrics (metrics) configures the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics"`
	// Alerts (alerts) configures alert sinks, deduplication and digests
	// (see alerts.go).
	Alerts Alerts `yaml:"alerts"`
	// Proxy (proxy) configures the forward-proxy listener (HTTPS_PROXY mode).
	Proxy Proxy `yaml:"proxy"`
	// LocalCA (local_ca) configures keystile's local certificate authority,
	// which issues the forward proxy's certificates and, optionally, the
	// gateway's.
	LocalCA LocalCA `yaml:"local_ca"`
	// Console (console) configures the web console for operators (see
	// console.go).
	Console Console `yaml:"console"`
	// KillSwitch (killswitch) configures the kill switch, bots' own kill
	// requests and loss guards (see KillSwitch).
	KillSwitch KillSwitch `yaml:"killswitch"`
	// Detect (detect) configures anomaly detection and its actions.
	Detect Detect `yaml:"detect"`
	// Store (store) says where the state is kept: the embedded SQLite
	// database (default) or a shared PostgreSQL database, with Redis (see
	// store.go).
	Store Store `yaml:"store"`

	// src remembers where each key was in the file Parse read (nil for a
	// Config built in code, and for an empty file); see Locate.
	src *source `yaml:"-"`
}

// Log configures logging.
type Log struct {
	// Level (log.level) is one of debug, info, warn, error. Default info;
	// "" means info.
	Level string `yaml:"level"`
	// Format (log.format) is text or json. Default text; "" means text.
	Format string `yaml:"format"`
}

// MasterKey says where the vault's master key (KEK) comes from.
type MasterKey struct {
	// Source (master_key.source) is file, passphrase, keyring or env.
	// Default file; "" means file.
	Source string `yaml:"source"`
	// File (master_key.file) is the key file for source file.
	// "" means <data_dir>/master.key; a relative path is relative to the
	// data dir.
	File string `yaml:"file"`
	// PassphraseFile (master_key.passphrase_file) holds the passphrase for
	// source passphrase. "" means $KEYSTILE_PASSPHRASE_FILE, else a prompt.
	PassphraseFile string `yaml:"passphrase_file"`
	// KeyringService (master_key.keyring_service) is the OS keyring service
	// name for source keyring. Default "keystile".
	KeyringService string `yaml:"keyring_service"`
}

// Admin configures the admin API.
type Admin struct {
	// Socket (admin.socket) is the unix socket path. "" means
	// <data_dir>/admin.sock.
	Socket string `yaml:"socket"`
	// AllowedUIDs (admin.allowed_uids) are uids allowed to connect besides
	// the server's own. Each must be >= 0. Default none.
	AllowedUIDs []int `yaml:"allowed_uids"`
	// Listen (admin.listen) is an optional TCP host:port serving the same
	// admin API to clients holding an admin bearer token (admin.tokens).
	// "" (the default) serves none: the unix socket is the only way in.
	// A non-loopback address requires tls_cert and tls_key.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey (admin.tls_cert, admin.tls_key) are PEM files of
	// the TCP listener's certificate and key; both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AllowCIDRs (admin.allow_cidrs) are the client addresses (CIDR
	// prefixes or bare addresses) the TCP listener accepts a connection
	// from; any other connection is closed before TLS or HTTP. Default
	// (empty): loopback only.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// Tokens (admin.tokens) are the admin bearer tokens the TCP listener
	// accepts, by SHA-256 digest only (keystile admin token new prints a
	// token and its entry). Required when listen is set.
	Tokens []AdminToken `yaml:"tokens"`
	// MFA (admin.mfa) tunes the admin second factor (keystile mfa).
	MFA AdminMFA `yaml:"mfa"`
}

// AdminToken is one admin bearer token of the TCP listener.
type AdminToken struct {
	// Name (admin.tokens[].name) names the holder in logs and audit
	// records; [a-z0-9][a-z0-9_-]{0,31}.
	Name string `yaml:"name"`
	// SHA256 (admin.tokens[].sha256) is the hex SHA-256 of the token.
	SHA256 string `yaml:"sha256"`
}

// AdminMFA tunes the admin second factor. Zero values mean the defaults.
type AdminMFA struct {
	// SessionTTL (admin.mfa.session_ttl) is how long an admin session
	// from `keystile mfa login` lasts. Default 5m; at most 1h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// MaxFailures (admin.mfa.max_failures) is how many wrong codes in a
	// row are answered at once; after that each attempt waits for a
	// lockout. Default 5.
	MaxFailures int `yaml:"max_failures"`
	// Lockout (admin.mfa.lockout) is the first lockout; it doubles with
	// every further failure up to max_lockout. Default 30s.
	Lockout time.Duration `yaml:"lockout"`
	// MaxLockout (admin.mfa.max_lockout) caps the lockout. Default 1h.
	MaxLockout time.Duration `yaml:"max_lockout"`
	// Issuer (admin.mfa.issuer) is the issuer shown by authenticator
	// apps. Default "keystile".
	Issuer string `yaml:"issuer"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen (metrics.listen) is the TCP host:port of a separate listener
	// serving GET /metrics; "" (the default) serves none. Keep it on
	// loopback or behind a firewall: the series name venues, operations,
	// policies and order volumes (never tokens, secrets or order ids).
	Listen string `yaml:"listen"`
}

// Gateway configures the bot-facing listener. Zero sizes and durations
// mean the defaults shown.
type Gateway struct {
	// Listen (gateway.listen) is the TCP host:port to listen on; "" disables
	// TCP. Default 127.0.0.1:7878.
	Listen string `yaml:"listen"`
	// UnixSocket (gateway.unix_socket) is an optional unix socket path.
	UnixSocket string `yaml:"unix_socket"`
	// MaxBodyBytes (gateway.max_body_bytes) caps a request body. Default 1048576.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes (gateway.max_header_bytes) caps request headers. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout (gateway.read_header_timeout). Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout (gateway.read_timeout). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout (gateway.write_timeout). Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout (gateway.idle_timeout). Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TLS (gateway.tls) serves the TCP listener over HTTPS (for SDKs that
	// insist on https:// base URLs). Off by default.
	TLS GatewayTLS `yaml:"tls"`
}

// GatewayTLS configures HTTPS on the gateway's TCP listener: either a
// certificate from the local CA (local_ca: true) or the operator's own
// certificate (cert_file and key). Never both.
type GatewayTLS struct {
	// LocalCA (gateway.tls.local_ca) serves a certificate issued by
	// keystile's local CA for Names. Default false.
	LocalCA bool `yaml:"local_ca"`
	// Names (gateway.tls.names) are the DNS names and IP addresses the
	// local CA's certificate is issued for. "" / empty means localhost,
	// 127.0.0.1 and ::1 plus the listen host when it is a specific one.
	// Only with local_ca.
	Names []string `yaml:"names"`
	// CertFile (gateway.tls.cert_file) is a PEM certificate chain (leaf
	// first) of the operator's own certificate.
	CertFile string `yaml:"cert_file"`
	// Key (gateway.tls.key) is a secret reference to its private key
	// (PEM): file:/path (the file must be 0600 or stricter),
	// vault:CREDENTIAL#FIELD, env:VAR, dotenv:PATH#KEY or
	// keyring:SERVICE/USER. Required with cert_file.
	Key string `yaml:"key"`
	// MinVersion (gateway.tls.min_version) is "1.2" or "1.3". Default "1.2".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether the gateway serves TLS.
func (t GatewayTLS) Enabled() bool { return t.LocalCA || t.CertFile != "" }

// Proxy configures the forward-proxy listener.
type Proxy struct {
	// Listen (proxy.listen) is the TCP host:port of the forward proxy bots
	// reach with HTTPS_PROXY=http://keystile:kst_...@<listen>; "" (the default)
	// serves none. Keep it on loopback: the CONNECT request carries the
	// token in clear.
	Listen string `yaml:"listen"`
	// MaxTunnels (proxy.max_tunnels) bounds open tunnels (503 beyond).
	// Default 1024.
	MaxTunnels int `yaml:"max_tunnels"`
}

// LocalCA configures keystile's local certificate authority (its key
// lives in the vault; keystile init creates it).
type LocalCA struct {
	// LeafTTL (local_ca.leaf_ttl) is the lifetime of the certificates it
	// issues; they are renewed after two thirds of it. Default 24h; between
	// 10m and 720h.
	LeafTTL time.Duration `yaml:"leaf_ttl"`
}

// Tokens bounds client token lifetimes.
type Tokens struct {
	// DefaultTTL (tokens.default_ttl) is the lifetime of a token minted
	// without one. Default 24h.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL (tokens.max_ttl) is the longest lifetime a token may have; it
	// must be >= default_ttl. Default 720h.
	MaxTTL time.Duration `yaml:"max_ttl"`
}

// Venue types accepted in venues.<id>.type.
const (
	TypeStake   = "stake"
	TypeDMarket = "dmarket"
	TypeBetfair = "betfair"
	TypeSTAPI   = "stapi"
	TypeGeneric = "generic"
	// Crypto exchanges.
	TypeBinance  = "binance"
	TypeKraken   = "kraken"
	TypeOKX      = "okx"
	TypeBybit    = "bybit"
	TypeCoinbase = "coinbase"
)

// Venue is one upstream API.
type Venue struct {
	// Type (venues.<id>.type) is stake, dmarket, betfair, stapi, generic,
	// binance, kraken, okx, bybit or coinbase.
	// Required.
	Type string `yaml:"type"`
	// Credential (venues.<id>.credential) is the name of the vault
	// credential used to sign requests. Required. Never a secret value.
	Credential string `yaml:"credential"`
	// BaseURL (venues.<id>.base_url) is the upstream for kst_live_ tokens.
	// Required; https:// (http:// only with sandbox: true to a loopback
	// host); no userinfo, query or fragment.
	BaseURL string `yaml:"base_url"`
	// TestBaseURL (venues.<id>.test_base_url) is the optional upstream for
	// kst_test_ tokens; same rules as base_url.
	TestBaseURL string `yaml:"test_base_url"`
	// IdentityURL (venues.<id>.identity_url) is the Betfair login host.
	// Betfair only; "" means https://identitysso-cert.betfair.com for
	// certlogin and https://identitysso.betfair.com for login.
	IdentityURL string `yaml:"identity_url"`
	// Login (venues.<id>.login) is the Betfair login flow: certlogin or
	// login. Betfair only; default certlogin.
	Login string `yaml:"login"`
	// Tier (venues.<id>.tier) is the account's rate-limit tier, for
	// venues whose limits depend on it. Kraken only: starter (default),
	// intermediate, pro, or none (no local counter model).
	Tier string `yaml:"tier"`
	// Hosts (venues.<id>.hosts) are extra hosts the venue may reach. The
	// hosts of the URLs above are always allowed.
	Hosts []string `yaml:"hosts"`
	// ProxyHosts (venues.<id>.proxy_hosts) are real venue hosts (e.g.
	// api.binance.com, fapi.binance.com) whose CONNECTs the forward proxy
	// serves with this venue, so that an SDK whose URLs are fixed reaches
	// the sandbox unchanged. Only with sandbox: true and loopback URLs:
	// only kst_test_ tokens of this venue use them, and the requests go to
	// the loopback sandbox, never to the real host. Bare host names or
	// host:port (default port 443).
	ProxyHosts []string `yaml:"proxy_hosts"`
	// Sandbox (venues.<id>.sandbox) allows http:// URLs, but only to
	// loopback hosts (127.0.0.0/8, ::1, localhost). Default false.
	Sandbox bool `yaml:"sandbox"`
	// TLS (venues.<id>.tls) configures upstream TLS.
	TLS TLS `yaml:"tls"`
	// Timeouts (venues.<id>.timeouts) bound each upstream request.
	Timeouts Timeouts `yaml:"timeouts"`
	// Retry (venues.<id>.retry) configures retries of safe requests.
	Retry Retry `yaml:"retry"`
	// Operations (venues.<id>.operations) is the operations table of a
	// generic venue: which method and path pattern is which named operation
	// (scopes and policies refer to the names). Required for type generic,
	// rejected for the others (their table is built in). Routes not listed
	// are unmapped and denied.
	Operations []Operation `yaml:"operations"`
	// Auth (venues.<id>.auth) is the signing scheme. Required for type
	// generic, optional for stapi, rejected for the other types (their
	// scheme is built in). Nil when absent.
	Auth *Auth `yaml:"auth"`
}

// Operation maps requests to a named operation.
type Operation struct {
	// Method (operations[].method) is an HTTP method or "*". Required.
	Method string `yaml:"method"`
	// Path (operations[].path) is a path pattern below the base URL:
	// "/"-separated, "{name}" matches one segment, a final "*" the rest.
	// Required.
	Path string `yaml:"path"`
	// Op (operations[].op) is the operation name, e.g. order.place,
	// market.read, wallet.withdraw. Required.
	Op string `yaml:"op"`
}

// TLS configures upstream TLS. Certificates are always verified.
type TLS struct {
	// MinVersion (tls.min_version) is "1.2" or "1.3". Default "1.2".
	// Quote it in YAML: an unquoted 1.2 is a number.
	MinVersion string `yaml:"min_version"`
	// CAFile (tls.ca_file) is an optional PEM bundle trusted instead of the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName (tls.server_name) overrides the name verified in the
	// server certificate.
	ServerName string `yaml:"server_name"`
}

// Timeouts bound an upstream request. Each must be positive.
type Timeouts struct {
	// Connect (timeouts.connect). Default 5s.
	Connect time.Duration `yaml:"connect"`
	// TLSHandshake (timeouts.tls_handshake). Default 5s.
	TLSHandshake time.Duration `yaml:"tls_handshake"`
	// ResponseHeader (timeouts.response_header). Default 15s.
	ResponseHeader time.Duration `yaml:"response_header"`
	// Total (timeouts.total) bounds the whole exchange; must be >=
	// response_header. Default 30s.
	Total time.Duration `yaml:"total"`
}

// Retry configures retries of requests that are safe to repeat.
type Retry struct {
	// MaxAttempts (retry.max_attempts) counts the first try; 1..10. Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialBackoff (retry.initial_backoff). Default 100ms.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff (retry.max_backoff); >= initial_backoff. Default 2s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxRetryAfter (retry.max_retry_after) is the longest Retry-After
	// honoured; longer ones fail the request. Default 10s.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// Auth schemes accepted in auth.scheme.
const (
	SchemeHeader  = "header"
	SchemeBearer  = "bearer"
	SchemeBasic   = "basic"
	SchemeQuery   = "query"
	SchemeHMAC    = "hmac"
	SchemeRFC9421 = "rfc9421"
	SchemeEd25519 = "ed25519"
	SchemeSigV4   = "sigv4"
	SchemeOAuth2  = "oauth2"
)

// Auth says how requests to a generic (or stapi) venue are authenticated.
// Field names refer to fields of the venue's vault credential.
type Auth struct {
	// Scheme (auth.scheme) is header, bearer, basic, query, hmac, rfc9421,
	// ed25519, sigv4 or oauth2. Required.
	Scheme string `yaml:"scheme"`
	// KeyField (auth.key_field) is the credential field holding the key or
	// identity. Default per scheme: api_key (header, query, hmac, rfc9421,
	// ed25519, sigv4), access_token (bearer), username (basic), client_id
	// (oauth2).
	KeyField string `yaml:"key_field"`
	// SecretField (auth.secret_field) is the credential field holding the
	// signing secret. Default per scheme: secret (hmac, sigv4), password
	// (basic), private_key (rfc9421, ed25519), client_secret (oauth2).
	SecretField string `yaml:"secret_field"`
	// Header (auth.header) is the header carrying the key (header scheme,
	// and the key header for ed25519). Default X-API-Key for header.
	Header string `yaml:"header"`
	// QueryParam (auth.query_param) is the query parameter carrying the key
	// (query scheme). Default api_key for query.
	QueryParam string `yaml:"query_param"`
	// HMAC (auth.hmac) configures the hmac scheme; required for it.
	HMAC HMAC `yaml:"hmac"`
	// RFC9421 (auth.rfc9421) configures HTTP Message Signatures.
	RFC9421 RFC9421 `yaml:"rfc9421"`
	// SigV4 (auth.sigv4) configures AWS Signature Version 4.
	SigV4 SigV4 `yaml:"sigv4"`
	// OAuth2 (auth.oauth2) configures OAuth 2.0 token acquisition.
	OAuth2 OAuth2 `yaml:"oauth2"`
}

// HMACPlaceholders returns the placeholders allowed in auth.hmac.template,
// without braces.
func HMACPlaceholders() []string {
	return []string{"timestamp", "nonce", "method", "path", "query", "body", "api_key"}
}

// HMAC configures a generic HMAC signature over a template.
type HMAC struct {
	// Template (hmac.template) is the string to sign. Placeholders:
	// {timestamp} {nonce} {method} {path} {query} {body} {api_key}; any
	// other {...} is an error. Required for scheme hmac.
	Template string `yaml:"template"`
	// Algorithm (hmac.algorithm) is sha256, sha384 or sha512. Default sha256.
	Algorithm string `yaml:"algorithm"`
	// Encoding (hmac.encoding) of the signature: hex, base64 or base64url.
	// Default hex.
	Encoding string `yaml:"encoding"`
	// KeyEncoding (hmac.key_encoding) of the stored secret: raw, hex or
	// base64. Default raw.
	KeyEncoding string `yaml:"key_encoding"`
	// TimestampFormat (hmac.timestamp_format) is unix, unix_ms, iso8601_ms
	// or rfc1123. Default unix_ms.
	TimestampFormat string `yaml:"timestamp_format"`
	// KeyHeader (hmac.key_header) carries the api key; "" sends none.
	KeyHeader string `yaml:"key_header"`
	// TimestampHeader (hmac.timestamp_header) carries the timestamp; "" sends none.
	TimestampHeader string `yaml:"timestamp_header"`
	// SignatureHeader (hmac.signature_header) carries the signature. One of
	// signature_header and signature_query_param is required.
	SignatureHeader string `yaml:"signature_header"`
	// NonceHeader (hmac.nonce_header) carries the nonce; "" sends none.
	NonceHeader string `yaml:"nonce_header"`
	// SignatureQueryParam (hmac.signature_query_param) carries the
	// signature in the query instead of a header.
	SignatureQueryParam string `yaml:"signature_query_param"`
	// SignaturePrefix (hmac.signature_prefix) is prepended to the encoded
	// signature (e.g. "HMAC ").
	SignaturePrefix string `yaml:"signature_prefix"`
}

// RFC9421 configures HTTP Message Signatures (RFC 9421).
type RFC9421 struct {
	// Label (rfc9421.label) is the signature label. Default sig1.
	Label string `yaml:"label"`
	// KeyID (rfc9421.key_id) is the keyid parameter; "" means the value of
	// the credential's key_field.
	KeyID string `yaml:"key_id"`
	// Alg (rfc9421.alg) is ed25519, ecdsa-p256-sha256 or hmac-sha256.
	// Default ed25519.
	Alg string `yaml:"alg"`
	// Components (rfc9421.components) are the covered components: derived
	// ones (@method @authority @path @query @target-uri @scheme
	// @request-target) or lowercase header names. Default
	// ["@method","@authority","@path","content-digest"].
	Components []string `yaml:"components"`
}

// SigV4 configures AWS Signature Version 4.
type SigV4 struct {
	// Region (sigv4.region). Required for scheme sigv4.
	Region string `yaml:"region"`
	// Service (sigv4.service). Required for scheme sigv4.
	Service string `yaml:"service"`
}

// OAuth2 configures OAuth 2.0 (client credentials, refresh token, or
// authorization code with a stored refresh token).
type OAuth2 struct {
	// TokenURL (oauth2.token_url) is the token endpoint. Required for
	// scheme oauth2; https:// (http:// only with sandbox to loopback).
	TokenURL string `yaml:"token_url"`
	// AuthURL (oauth2.auth_url) is the authorization endpoint, for the
	// authorization-code flow run by the CLI; same URL rules.
	AuthURL string `yaml:"auth_url"`
	// Scopes (oauth2.scopes) requested.
	Scopes []string `yaml:"scopes"`
	// ClientAuth (oauth2.client_auth) is how the client authenticates to
	// the token endpoint: basic (HTTP Basic) or body (form fields). Default
	// basic.
	ClientAuth string `yaml:"client_auth"`
}

// Default returns the documented defaults. It has no venues.
func Default() *Config {
	return &Config{
		Log:       Log{Level: "info", Format: "text"},
		MasterKey: MasterKey{Source: "file", KeyringService: "keystile"},
		Gateway: Gateway{
			Listen:            "127.0.0.1:7878",
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    64 << 10,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			TLS:               GatewayTLS{MinVersion: "1.2"},
		},
		Admin:       Admin{MFA: AdminMFA{SessionTTL: 5 * time.Minute, MaxFailures: 5, Lockout: 30 * time.Second, MaxLockout: time.Hour, Issuer: "keystile"}},
		Proxy:       Proxy{MaxTunnels: 1024},
		LocalCA:     LocalCA{LeafTTL: 24 * time.Hour},
		Tokens:      Tokens{DefaultTTL: 24 * time.Hour, MaxTTL: 720 * time.Hour},
		Audit:       Audit{Sink: "sqlite", CheckpointEvery: 1000, MaxBatch: 512},
		Idempotency: Idempotency{Window: 24 * time.Hour},
		Alerts:      DefaultAlerts(),
		Console:     Console{SessionTTL: DefaultConsoleSessionTTL, IdleTimeout: DefaultConsoleIdleTimeout},
		KillSwitch:  defaultKillSwitch(),
		Store:       Store{PollInterval: DefaultStorePollInterval},
	}
}

// DefaultVenue returns the defaults every venue entry starts from.
func DefaultVenue() Venue {
	return Venue{
		TLS:      TLS{MinVersion: "1.2"},
		Timeouts: Timeouts{Connect: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 15 * time.Second, Total: 30 * time.Second},
		Retry:    Retry{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, MaxRetryAfter: 10 * time.Second},
	}
}

// applyDefaults fills the defaults that depend on other fields (per venue
// type and per auth scheme).
func applyDefaults(c *Config) {
	for id, v := range c.Venues {
		if v.Type == TypeBetfair && v.Login == "" {
			v.Login = "certlogin"
		}
		if v.Auth != nil {
			a := *v.Auth
			defaultAuth(&a)
			v.Auth = &a
		}
		c.Venues[id] = v
	}
}

func defaultAuth(a *Auth) {
	setIfEmpty := func(p *string, s string) {
		if *p == "" {
			*p = s
		}
	}
	switch a.Scheme {
	case SchemeHeader:
		setIfEmpty(&a.KeyField, "api_key")
		setIfEmpty(&a.Header, "X-API-Key")
	case SchemeQuery:
		setIfEmpty(&a.KeyField, "api_key")
		setIfEmpty(&a.QueryParam, "api_key")
	case SchemeBearer:
		setIfEmpty(&a.KeyField, "access_token")
	case SchemeBasic:
		setIfEmpty(&a.KeyField, "username")
		setIfEmpty(&a.SecretField, "password")
	case SchemeHMAC:
		setIfEmpty(&a.KeyField, "api_key")
		setIfEmpty(&a.SecretField, "secret")
		setIfEmpty(&a.HMAC.Algorithm, "sha256")
		setIfEmpty(&a.HMAC.Encoding, "hex")
		setIfEmpty(&a.HMAC.KeyEncoding, "raw")
		setIfEmpty(&a.HMAC.TimestampFormat, "unix_ms")
	case SchemeRFC9421, SchemeEd25519:
		setIfEmpty(&a.KeyField, "api_key")
		setIfEmpty(&a.SecretField, "private_key")
		if a.Scheme == SchemeRFC9421 {
			setIfEmpty(&a.RFC9421.Label, "sig1")
			setIfEmpty(&a.RFC9421.Alg, "ed25519")
			if len(a.RFC9421.Components) == 0 {
				a.RFC9421.Components = []string{"@method", "@authority", "@path", "content-digest"}
			}
		}
	case SchemeSigV4:
		setIfEmpty(&a.KeyField, "api_key")
		setIfEmpty(&a.SecretField, "secret")
	case SchemeOAuth2:
		setIfEmpty(&a.KeyField, "client_id")
		setIfEmpty(&a.SecretField, "client_secret")
		setIfEmpty(&a.OAuth2.ClientAuth, "basic")
	}
}
