package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/keystile/keystile/internal/secret"
)

// Options configure Open. The zero value is not usable: Addr is required.
type Options struct {
	// Addr is the server's host:port.
	Addr string
	// Username and Password authenticate (Redis 6 ACL, or only a
	// password for requirepass). The password is revealed to the driver
	// only when it connects.
	Username string
	Password secret.Value
	// DB is the database number.
	DB int
	// TLS, if non-nil, connects with TLS. CAFile, if set, is a PEM file
	// of the CAs to trust (implies TLS; with TLS also set, it replaces
	// TLS.RootCAs).
	TLS    *tls.Config
	CAFile string
	// PoolSize caps the connection pool (0: 10 per CPU, go-redis's
	// default).
	PoolSize int
	// DialTimeout bounds a connect (0: 2 s); ReadTimeout bounds a reply
	// (0: 1 s). Writes use ReadTimeout too. Short by default: Redis is
	// on the request path of rate-limited requests, and a slow Redis
	// must fail over to the fallback quickly.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// KeyPrefix is put before every key and channel (e.g. "keystile:"
	// or "prod:"), so that several deployments can share a server.
	KeyPrefix string
}

// ParseURL reads redis://[user[:password]@]host[:port][/db] or rediss://
// (TLS) into Options. Its errors never repeat the URL, which may hold the
// password.
func ParseURL(s string) (Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Options{}, errors.New("redisstore: malformed Redis URL")
	}
	var o Options
	switch u.Scheme {
	case "redis":
	case "rediss":
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		return Options{}, errors.New("redisstore: Redis URL scheme must be redis or rediss")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "6379"
	}
	o.Addr = net.JoinHostPort(host, port)
	if o.TLS != nil {
		o.TLS.ServerName = host
	}
	if u.User != nil {
		o.Username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			o.Password = secret.FromString(p)
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return Options{}, errors.New("redisstore: Redis URL database must be a number")
		}
		o.DB = n
	}
	if len(u.Query()) > 0 {
		return Options{}, errors.New("redisstore: Redis URL options are not supported; use the configuration fields")
	}
	return o, nil
}

// Client is an open connection pool to Redis, with the health of the
// server as its commands last saw it. It is safe for concurrent use.
type Client struct {
	rdb    *redis.Client
	prefix string
	// where names the server for errors and status: host:port/db.
	where string
	now   func() time.Time

	mu        sync.Mutex
	downSince time.Time // zero while up
	lastErr   string
	lastProbe time.Time // last command let through while down
}

// probeEvery is how often, while Redis is down, a command is let through
// to find out whether it is back; the others fail at once (ErrDown).
const probeEvery = 500 * time.Millisecond

// ErrDown is the error of a command not sent because Redis is down: it
// failed recently and is probed again every 500 ms.
var ErrDown = errors.New("redisstore: Redis is down")

// admit returns ErrDown while Redis is down and was probed less than
// probeEvery ago; otherwise nil, and the caller's command is the probe.
func (c *Client) admit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.downSince.IsZero() {
		return nil
	}
	now := c.now()
	if now.Sub(c.lastProbe) < probeEvery {
		return fmt.Errorf("%w since %s (%s)", ErrDown, c.downSince.UTC().Format(time.RFC3339), c.where)
	}
	c.lastProbe = now
	return nil
}

// Open connects to Redis and checks it answers PING. It fails if the
// server is unreachable or refuses the credentials: a configured Redis
// that never worked is a configuration error, not an outage.
func Open(ctx context.Context, o Options) (*Client, error) {
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := c.Ready(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// New is Open without the check: the client connects when first used, and
// reports the server down until it answers.
func New(o Options) (*Client, error) {
	if o.Addr == "" {
		return nil, errors.New("redisstore: no Redis address")
	}
	if o.DB < 0 {
		return nil, fmt.Errorf("redisstore: negative database number %d", o.DB)
	}
	tlsConf := o.TLS
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redisstore: CA file %s holds no PEM certificate", o.CAFile)
		}
		if tlsConf == nil {
			host, _, _ := net.SplitHostPort(o.Addr)
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		} else {
			tlsConf = tlsConf.Clone()
		}
		tlsConf.RootCAs = pool
	}
	dial, read := o.DialTimeout, o.ReadTimeout
	if dial <= 0 {
		dial = 2 * time.Second
	}
	if read <= 0 {
		read = time.Second
	}
	user, pass := o.Username, o.Password.Clone()
	ro := &redis.Options{
		Addr: o.Addr,
		DB:   o.DB,
		CredentialsProvider: func() (string, string) {
			return user, string(pass.Reveal())
		},
		TLSConfig:    tlsConf,
		PoolSize:     o.PoolSize,
		DialTimeout:  dial,
		ReadTimeout:  read,
		WriteTimeout: read,
		MaxRetries:   1,
		// One dial per attempt: a down Redis must fail fast, the
		// policy engine's fallback then applies.
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		DisableIdentity:    true,
		// Plain RESP2 and no maintenance notifications: nothing here
		// needs push messages, and they would add background work.
		Protocol:                 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	c := &Client{
		rdb:    redis.NewClient(ro),
		prefix: o.KeyPrefix,
		where:  fmt.Sprintf("%s/%d", o.Addr, o.DB),
		now:    time.Now,
	}
	c.rdb.AddHook(healthHook{c})
	return c, nil
}

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Ready reports whether Redis answers PING now.
func (c *Client) Ready(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return c.errorf("ping", err)
	}
	return nil
}

// errorf wraps err from step, naming the server (never the password:
// go-redis errors do not carry the credentials).
func (c *Client) errorf(step string, err error) error {
	return fmt.Errorf("redisstore: %s %s: %w", step, c.where, err)
}

// key is the full name of a key or channel.
func (c *Client) key(parts ...string) string {
	return c.prefix + strings.Join(parts, ":")
}

// observe records the outcome of a command: any reply, even an error reply,
// means the server is up; a network or timeout error means down.
func (c *Client) observe(err error) {
	down := err != nil && !isReply(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case down && c.downSince.IsZero():
		c.downSince = c.now()
		c.lastProbe = c.downSince
		c.lastErr = err.Error()
	case down:
		c.lastErr = err.Error()
	case !down:
		c.downSince, c.lastErr = time.Time{}, ""
	}
}

// isReply reports whether err is an answer from the server (redis.Nil or
// an error reply such as WRONGTYPE), not a failure to reach it.
func isReply(err error) bool {
	if errors.Is(err, redis.Nil) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		// Errors that mean the server is unusable although it
		// answered.
		msg := re.Error()
		for _, p := range []string{"LOADING", "NOAUTH", "WRONGPASS", "NOPERM", "MASTERDOWN", "READONLY", "BUSY"} {
			if strings.HasPrefix(msg, p) {
				return false
			}
		}
		return true
	}
	return false
}

// DownSince is when Redis was first seen failing in the current outage
// (zero while it answers).
func (c *Client) DownSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.downSince
}

// healthHook feeds every command's outcome to Client.observe.
type healthHook struct{ c *Client }

func (h healthHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.c.observe(err)
		}
		return cn, err
	}
}

func (h healthHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if ctx.Err() == nil {
			h.c.observe(err)
		}
		return err
	}
}

func (h healthHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if ctx.Err() == nil {
			h.c.observe(err)
		}
		return err
	}
}
