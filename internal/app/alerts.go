package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/email"
	"github.com/keystile/keystile/internal/alert/ntfy"
	"github.com/keystile/keystile/internal/alert/slack"
	"github.com/keystile/keystile/internal/alert/telegram"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/secretref"
)

// Alerts returns the server's alert dispatcher: detectors and actions
// call its Send (never blocks) to raise an alert. It is never nil; with
// no sink configured, alerts are counted and go nowhere.
func (s *Server) Alerts() *alert.Dispatcher { return s.alerts }

// secretTTL is how long a resolved sink secret is reused before its
// reference is read again (a rotated file or vault field is picked up;
// SIGHUP re-reads at once).
const secretTTL = 5 * time.Minute

// cachedSecret resolves a secret reference when first needed, keeps the
// value for secretTTL and registers it with the log redactor, so that the
// value is scrubbed from every log line and alert (a Slack URL or bot
// token echoed in an error, say). A failed resolution is retried at the
// next use.
type cachedSecret struct {
	ref secretref.Ref
	res *secretref.Resolver
	red *logging.Redactor
	now func() time.Time

	mu  sync.Mutex
	val secret.Value
	at  time.Time
}

func (c *cachedSecret) get(ctx context.Context) (secret.Value, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.val.IsZero() && c.now().Sub(c.at) < secretTTL {
		return c.val, nil
	}
	v, err := c.res.Resolve(ctx, c.ref)
	if err != nil {
		if !c.val.IsZero() {
			// Keep the last good value rather than fail deliveries
			// because a reference is briefly unreadable.
			return c.val, nil
		}
		return secret.Value{}, err
	}
	if c.red != nil {
		c.red.Register(v)
	}
	c.val, c.at = v, c.now()
	return v, nil
}

// alertBuilder turns the alerts: section into sinks.
type alertBuilder struct {
	res *secretref.Resolver
	red *logging.Redactor
	log *slog.Logger
}

func (b alertBuilder) secret(ref string) (func(context.Context) (secret.Value, error), *cachedSecret, error) {
	r, err := secretref.Parse(ref)
	if err != nil {
		return nil, nil, errors.New("not a secret reference")
	}
	c := &cachedSecret{ref: r, res: b.res, red: b.red, now: time.Now}
	return c.get, c, nil
}

// build returns the dispatcher's sinks and policy for cfg. It fails on
// what can be checked without the network (URLs, CA files, addresses);
// secret references are resolved at first use, and prefetched by
// prefetch to log early what cannot be read.
func (b alertBuilder) build(cfg config.Alerts) ([]alert.SinkConfig, alert.Policy, []*cachedSecret, error) {
	p := alert.Policy{DedupeWindow: cfg.DedupeWindow, QueueSize: cfg.QueueSize, Retry: alert.Retry{
		MaxAttempts: cfg.Retry.MaxAttempts, InitialBackoff: cfg.Retry.InitialBackoff, MaxBackoff: cfg.Retry.MaxBackoff, MaxRetryAfter: cfg.Retry.MaxRetryAfter,
	}}
	var err error
	if p.RateCount, p.RatePer, err = config.ParseRate(cfg.RateLimit); err != nil {
		return nil, p, nil, fmt.Errorf("alerts.rate_limit: %w", err)
	}
	var out []alert.SinkConfig
	var secrets []*cachedSecret
	for i, sc := range cfg.Sinks {
		key := fmt.Sprintf("alerts.sinks[%d] (%s)", i, sc.Name)
		c, sec, err := b.sink(sc)
		if err != nil {
			return nil, p, nil, fmt.Errorf("%s: %w", key, err)
		}
		out = append(out, c)
		secrets = append(secrets, sec...)
	}
	return out, p, secrets, nil
}

func (b alertBuilder) sink(sc config.AlertSink) (alert.SinkConfig, []*cachedSecret, error) {
	c := alert.SinkConfig{Name: sc.Name, Type: sc.Type, Timeout: sc.Timeout}
	if c.Timeout == 0 {
		c.Timeout = config.DefaultAlertTimeout
	}
	if sc.MinSeverity != "" {
		sev, err := alert.ParseSeverity(sc.MinSeverity)
		if err != nil {
			return c, nil, err
		}
		c.MinSeverity = sev
	}
	if d := sc.Digest; d != nil {
		sched, err := digestSchedule(d)
		if err != nil {
			return c, nil, err
		}
		c.Digest = sched
	}
	st := sc.Settings
	var secrets []*cachedSecret
	ref := func(r string) (func(context.Context) (secret.Value, error), error) {
		f, cs, err := b.secret(r)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, cs)
		return f, nil
	}
	hc, err := alert.NewHTTPClient(alert.HTTPOptions{CAFile: st.CAFile, Timeout: c.Timeout})
	if err != nil {
		return c, nil, err
	}
	switch sc.Type {
	case config.SinkWebhook:
		key, err := ref(st.SecretRef)
		if err != nil {
			return c, nil, fmt.Errorf("settings.secret_ref: %w", err)
		}
		c.Sink, err = webhook.New(webhook.Options{URL: st.URL, Key: key, Client: hc})
		if err != nil {
			return c, nil, err
		}
	case config.SinkSlack:
		u, err := ref(st.WebhookURLRef)
		if err != nil {
			return c, nil, fmt.Errorf("settings.webhook_url_ref: %w", err)
		}
		c.Sink, err = slack.New(slack.Options{URL: u, Client: hc})
		if err != nil {
			return c, nil, err
		}
	case config.SinkTelegram:
		tok, err := ref(st.BotTokenRef)
		if err != nil {
			return c, nil, fmt.Errorf("settings.bot_token_ref: %w", err)
		}
		c.Sink, err = telegram.New(telegram.Options{APIURL: st.APIURL, Token: tok, ChatID: st.ChatID, Client: hc})
		if err != nil {
			return c, nil, err
		}
	case config.SinkNtfy:
		o := ntfy.Options{URL: st.URL, Client: hc}
		if st.TokenRef != "" {
			tok, err := ref(st.TokenRef)
			if err != nil {
				return c, nil, fmt.Errorf("settings.token_ref: %w", err)
			}
			o.Token = tok
		}
		c.Sink, err = ntfy.New(o)
		if err != nil {
			return c, nil, err
		}
	case config.SinkEmail:
		o := email.Options{Host: st.Host, Port: st.Port, Mode: st.TLS, ServerName: st.ServerName, Username: st.Username, From: st.From, To: st.To}
		if st.CAFile != "" {
			pem, err := os.ReadFile(st.CAFile) // #nosec G304 -- the operator names the CA file
			if err != nil {
				return c, nil, fmt.Errorf("settings.ca_file: %w", err)
			}
			o.RootCAs = x509.NewCertPool()
			if !o.RootCAs.AppendCertsFromPEM(pem) {
				return c, nil, fmt.Errorf("settings.ca_file: %s holds no PEM certificate", st.CAFile)
			}
		}
		if st.PasswordRef != "" {
			pw, err := ref(st.PasswordRef)
			if err != nil {
				return c, nil, fmt.Errorf("settings.password_ref: %w", err)
			}
			o.Password = pw
		}
		c.Sink, err = email.New(o)
		if err != nil {
			return c, nil, err
		}
	default:
		return c, nil, fmt.Errorf("unknown sink type %q", sc.Type)
	}
	return c, secrets, nil
}

func digestSchedule(d *config.AlertDigest) (*alert.Schedule, error) {
	at := d.At
	if at == "" {
		at = config.DefaultDigestAt
	}
	h, m, err := config.ParseClock(at)
	if err != nil {
		return nil, fmt.Errorf("digest.at: %w", err)
	}
	maxSev := d.MaxSeverity
	if maxSev == "" {
		maxSev = config.DefaultDigestSeverity
	}
	sev, err := alert.ParseSeverity(maxSev)
	if err != nil {
		return nil, fmt.Errorf("digest.max_severity: %w", err)
	}
	loc := time.UTC
	if d.TimeZone != "" {
		if loc, err = time.LoadLocation(d.TimeZone); err != nil {
			return nil, fmt.Errorf("digest.time_zone: %w", err)
		}
	}
	return &alert.Schedule{MaxSeverity: sev, Hour: h, Minute: m, Location: loc}, nil
}

// prefetch resolves every sink secret once, in the background, and logs
// the references that cannot be read (by reference, never value), so
// that a missing secret shows at start rather than at the first alert.
func (b alertBuilder) prefetch(secrets []*cachedSecret) {
	if len(secrets) == 0 {
		return
	}
	go func() {
		for _, c := range secrets {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := c.get(ctx); err != nil {
				b.log.Warn("alerts: a sink secret cannot be read yet; deliveries to that sink fail until it can", "ref", c.ref.String(), "err", err)
			}
			cancel()
		}
	}()
}

// newAlerts builds the dispatcher from the configuration in force.
func (s *Server) newAlerts(env Env, cfg config.Alerts) error {
	s.alertEnv = env
	b := s.alertBuilder(env)
	sinks, p, secrets, err := b.build(cfg)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	var sc alert.Scrubber
	if s.redactor != nil {
		sc = s.redactor
	}
	d, err := alert.New(alert.Options{Policy: p, Sinks: sinks, Store: s.db.Alerts(), Scrubber: sc, Logger: s.log})
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	s.alerts = d
	b.prefetch(secrets)
	return nil
}

func (s *Server) alertBuilder(env Env) alertBuilder {
	res := &secretref.Resolver{Getenv: env.Getenv, Vault: s.vault}
	if env.Keyring != nil {
		res.Keyring = env.Keyring
	} else {
		res.Keyring = env.keyring()
	}
	return alertBuilder{res: res, red: s.redactor, log: s.log}
}

// closeAlerts stops the dispatcher, giving queued alerts a few seconds.
func (s *Server) closeAlerts(ctx context.Context) {
	if s.alerts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.alerts.Close(ctx); err != nil {
		s.log.Warn("keystile: alerts still queued at shutdown were dropped", "err", err)
	}
}
