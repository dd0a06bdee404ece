package mfa_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// events collects audit events.
type events struct {
	mu sync.Mutex
	ev []audit.Event
}

func (e *events) Record(_ context.Context, ev audit.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

func (e *events) all() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]audit.Event(nil), e.ev...)
}

// rules lists the rules of the events so far.
func (e *events) rules() []string {
	var out []string
	for _, ev := range e.all() {
		out = append(out, ev.Rule)
	}
	return out
}

func (e *events) last() audit.Event {
	all := e.all()
	if len(all) == 0 {
		return audit.Event{}
	}
	return all[len(all)-1]
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a real SQLite database and vault in a temp dir, and a Manager on
// them with a test clock.
type env struct {
	t      *testing.T
	dir    string
	root   []byte
	db     *sqlite.DB
	vault  *vault.Vault
	m      *mfa.Manager
	clock  *clock
	events *events
	log    *syncBuf
	opts   mfa.Options
}

// start is 2025-03-04 10:00:10 UTC: 10 s into a step.
var start = time.Date(2025, 3, 4, 10, 0, 10, 0, time.UTC) //nolint:gochecknoglobals // test constant

func newEnv(t *testing.T, o mfa.Options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &clock{t: start}, events: &events{}, log: &syncBuf{}, opts: o}
	e.root = make([]byte, 32)
	_, _ = rand.Read(e.root)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(e.dir, "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Initialize(ctx, db.Vault(), secret.New(bytes.Clone(e.root)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.open()
	t.Cleanup(e.close)
	return e
}

// open (re)opens database, vault and manager: a server restart.
func (e *env) open() {
	e.t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(e.dir, "k.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(bytes.Clone(e.root))})
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.opts
	o.Store, o.Secrets, o.Audit, o.Now = db.MFA(), v, e.events, e.clock.Now
	o.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := mfa.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.vault, e.m = db, v, m
}

func (e *env) close() {
	if e.vault != nil {
		_ = e.vault.Close(context.Background())
		_ = e.db.Close()
		e.vault, e.db = nil, nil
	}
}

func (e *env) restart() {
	e.close()
	e.open()
}

// enrolled is an active enrolment and what the person holds.
type enrolled struct {
	secret   secret.Value
	recovery []string
}

func (e *env) enroll() enrolled {
	e.t.Helper()
	ctx := context.Background()
	sec, err := mfa.NewSecret(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	codes, err := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.m.BeginEnrollment(ctx, sec.Clone(), codes, admin()); err != nil {
		e.t.Fatal(err)
	}
	if err := e.m.ConfirmEnrollment(ctx, e.code(sec, 0), admin()); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(mfa.Period) // the confirmation spent this step
	return enrolled{secret: sec, recovery: codes}
}

// code is the TOTP code at now+off.
func (e *env) code(sec secret.Value, off time.Duration) string {
	e.t.Helper()
	c, err := mfa.CodeAt(sec, e.clock.Now().Add(off))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func admin() mfa.Attempt {
	return mfa.Attempt{Principal: "uid:1000", Action: "secret.set", RequestID: "req-1", Method: "PUT", Path: "/v1/secrets/x"}
}
