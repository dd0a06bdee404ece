package mfa_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

func TestNotEnrolledNeedsNothing(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	ctx := context.Background()
	m, err := e.m.Authorize(ctx, mfa.Credentials{}, admin())
	if err != nil || m != mfa.MethodNone {
		t.Fatalf("not enrolled: %v %v", m, err)
	}
	// A pending enrolment does not gate yet: the person may not have
	// scanned the code.
	sec, _ := mfa.NewSecret(nil)
	codes, _ := mfa.NewRecoveryCodes(nil, 10)
	if err := e.m.BeginEnrollment(ctx, sec.Clone(), codes, admin()); err != nil {
		t.Fatal(err)
	}
	if m, err := e.m.Authorize(ctx, mfa.Credentials{}, admin()); err != nil || m != mfa.MethodNone {
		t.Fatalf("pending: %v %v", m, err)
	}
	if _, err := e.m.Login(ctx, e.code(sec, 0), admin()); !errors.Is(err, mfa.ErrNotEnrolled) {
		t.Fatalf("login while pending: %v", err)
	}
	st, err := e.m.Status(ctx)
	if err != nil || st.State != mfa.StatePending || st.RecoveryCodesLeft != 10 {
		t.Fatalf("status %+v %v", st, err)
	}
}

func TestEnrollment(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	ctx := context.Background()
	if err := e.m.ConfirmEnrollment(ctx, "123456", admin()); !errors.Is(err, mfa.ErrNoPendingEnrollment) {
		t.Fatalf("confirm without begin: %v", err)
	}
	sec, _ := mfa.NewSecret(nil)
	codes, _ := mfa.NewRecoveryCodes(nil, 10)
	if err := e.m.BeginEnrollment(ctx, sec.Clone(), codes, admin()); err != nil {
		t.Fatal(err)
	}
	// The secret is in the vault, under the reserved name.
	err := e.vault.WithCredential(ctx, mfa.SecretName, func(c *vault.Credential) error {
		v, err := c.Field(mfa.SecretField)
		if err == nil && !v.Equal(sec) {
			t.Error("vault holds another secret")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A recovery code cannot confirm; a wrong code counts as a failure.
	if err := e.m.ConfirmEnrollment(ctx, codes[0], admin()); !errors.Is(err, mfa.ErrMalformedCode) {
		t.Fatalf("confirm with a recovery code: %v", err)
	}
	if err := e.m.ConfirmEnrollment(ctx, wrong(e.code(sec, 0)), admin()); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	if st, _ := e.m.Status(ctx); st.Failures != 2 || st.State != mfa.StatePending {
		t.Fatalf("status after failures %+v", st)
	}
	if err := e.m.ConfirmEnrollment(ctx, e.code(sec, 0), admin()); err != nil {
		t.Fatal(err)
	}
	st, _ := e.m.Status(ctx)
	if st.State != mfa.StateActive || st.Failures != 0 || !st.EnrolledAt.Equal(start) || st.RecoveryCodesLeft != 10 {
		t.Fatalf("status %+v", st)
	}
	// The confirming code is spent.
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: e.code(sec, 0)}, admin()); !errors.Is(err, mfa.ErrReplay) {
		t.Fatalf("confirming code reused: %v", err)
	}
	// Enrolling again needs a reset first.
	sec2, _ := mfa.NewSecret(nil)
	if err := e.m.BeginEnrollment(ctx, sec2, codes, admin()); !errors.Is(err, mfa.ErrAlreadyEnrolled) {
		t.Fatalf("second enrolment: %v", err)
	}
	want := []string{"mfa.pending", "mfa.malformed_code", "mfa.invalid_code", "mfa.enrolled", "mfa.replay", "mfa.already_enrolled"}
	if got := e.events.rules(); !slices.Equal(got, want) {
		t.Fatalf("audit rules %v, want %v", got, want)
	}
}

// wrong returns another 6-digit code.
func wrong(c string) string {
	b := []byte(c)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestSkewWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  time.Duration
		ok   bool
	}{
		{"now", 0, true},
		{"previous step", -mfa.Period, true},
		{"next step", mfa.Period, true},
		{"two steps back", -2 * mfa.Period, false},
		{"two steps ahead", 2 * mfa.Period, false},
		{"an hour ago", -time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, mfa.Options{})
			en := e.enroll()
			e.clock.Add(mfa.Period) // the previous step is unused
			_, err := e.m.Authorize(context.Background(), mfa.Credentials{Code: e.code(en.secret, tc.off)}, admin())
			if (err == nil) != tc.ok {
				t.Fatalf("code at %s: %v", tc.off, err)
			}
			if !tc.ok && !errors.Is(err, mfa.ErrInvalidCode) {
				t.Fatalf("want ErrInvalidCode, got %v", err)
			}
		})
	}
}

func TestReplayRefused(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	c := e.code(en.secret, 0)
	if m, err := e.m.Authorize(ctx, mfa.Credentials{Code: c}, admin()); err != nil || m != mfa.MethodTOTP {
		t.Fatalf("first use: %v %v", m, err)
	}
	for _, tc := range []struct {
		name string
		code string
	}{
		{"same code", c},
		{"same code with spaces", c[:3] + " " + c[3:]},
		{"previous step's code", e.code(en.secret, -mfa.Period)},
	} {
		if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: tc.code}, admin()); !errors.Is(err, mfa.ErrReplay) {
			t.Errorf("%s: want ErrReplay, got %v", tc.name, err)
		}
	}
	// The next step's code (clock skew ahead) is fine, and then the
	// current step's is refused: steps only go forward.
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: e.code(en.secret, mfa.Period)}, admin()); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(mfa.Period)
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: e.code(en.secret, 0)}, admin()); !errors.Is(err, mfa.ErrReplay) {
		t.Fatalf("step already used via skew: %v", err)
	}
	e.clock.Add(mfa.Period)
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: e.code(en.secret, 0)}, admin()); err != nil {
		t.Fatal(err)
	}
}

func TestReplayRefusedAcrossRestart(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	c := e.code(en.secret, 0)
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: c}, admin()); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: c}, admin()); !errors.Is(err, mfa.ErrReplay) {
		t.Fatalf("after restart: %v", err)
	}
	// A second manager on the same database (another process) is held to
	// the same step.
	e.clock.Add(mfa.Period)
	c2 := e.code(en.secret, 0)
	other, err := mfa.New(mfa.Options{Store: e.db.MFA(), Secrets: e.vault, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Authorize(ctx, mfa.Credentials{Code: c2}, admin()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: c2}, admin()); !errors.Is(err, mfa.ErrReplay) {
		t.Fatalf("used by the other manager: %v", err)
	}
}

func TestRecoveryCodeSingleUse(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	rc := en.recovery[3]
	// Typed differently: upper case, no dashes, look-alikes.
	typed := strings.ToUpper(strings.ReplaceAll(rc, "-", ""))
	typed = strings.NewReplacer("1", "l", "0", "O").Replace(typed)
	m, err := e.m.Authorize(ctx, mfa.Credentials{Code: typed}, admin())
	if err != nil || m != mfa.MethodRecovery {
		t.Fatalf("recovery code: %v %v", m, err)
	}
	if got := e.events.last(); got.Operation != "admin.mfa.recovery_code" || !strings.Contains(got.Error, "9 left") {
		t.Fatalf("audit %+v", got)
	}
	e.restart()
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: rc}, admin()); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("second use: %v", err)
	}
	if st, _ := e.m.Status(ctx); st.RecoveryCodesLeft != 9 {
		t.Fatalf("left %d", st.RecoveryCodesLeft)
	}
	// A made-up code in the right shape is refused.
	fake, _ := mfa.NewRecoveryCodes(nil, 1)
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: fake[0]}, admin()); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("unknown code: %v", err)
	}
	// Replacing the codes retires the old ones.
	fresh, _ := mfa.NewRecoveryCodes(nil, 8)
	if err := e.m.ReplaceRecoveryCodes(ctx, fresh, admin()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: en.recovery[0]}, admin()); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("old code after replacement: %v", err)
	}
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: fresh[7]}, admin()); err != nil {
		t.Fatalf("new code: %v", err)
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t, mfa.Options{MaxFailures: 3, Lockout: time.Minute, MaxLockout: 3 * time.Minute})
	en := e.enroll()
	ctx := context.Background()
	sess, err := e.m.Login(ctx, e.code(en.secret, 0), admin())
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(mfa.Period)
	try := func(code string) error {
		_, err := e.m.Authorize(ctx, mfa.Credentials{Code: code}, admin())
		return err
	}
	for i := range 3 {
		if err := try(wrong(e.code(en.secret, 0))); !errors.Is(err, mfa.ErrInvalidCode) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Locked: even the right code is not checked (and not spent).
	good := e.code(en.secret, 0)
	var le *mfa.LockedError
	if err := try(good); !errors.As(err, &le) || !le.Until.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("locked: %v", err)
	}
	if err := try(en.recovery[0]); !errors.As(err, &le) {
		t.Fatalf("recovery code while locked: %v", err)
	}
	// A session opened before keeps working through the lockout.
	if m, err := e.m.Authorize(ctx, mfa.Credentials{Session: sess.Token}, admin()); err != nil || m != mfa.MethodSession {
		t.Fatalf("session during lockout: %v %v", m, err)
	}
	// The lockout survives a restart.
	e.restart()
	if err := try(good); !errors.As(err, &le) {
		t.Fatalf("locked after restart: %v", err)
	}
	// After it, one more failure locks for twice as long, then capped.
	e.clock.Add(time.Minute)
	if err := try("000000"); !errors.Is(err, mfa.ErrInvalidCode) && !errors.Is(err, mfa.ErrReplay) {
		t.Fatalf("after lockout: %v", err)
	}
	if st, _ := e.m.Status(ctx); !st.LockedUntil.Equal(e.clock.Now().Add(2*time.Minute)) || st.Failures != 4 {
		t.Fatalf("second lockout %+v", st)
	}
	e.clock.Add(2 * time.Minute)
	_ = try("000000")
	if st, _ := e.m.Status(ctx); !st.LockedUntil.Equal(e.clock.Now().Add(3 * time.Minute)) {
		t.Fatalf("capped lockout %+v", st)
	}
	e.clock.Add(3 * time.Minute)
	if err := try(e.code(en.secret, 0)); err != nil {
		t.Fatalf("good code after lockout: %v", err)
	}
	if st, _ := e.m.Status(ctx); st.Failures != 0 || !st.LockedUntil.IsZero() {
		t.Fatalf("a good code clears failures: %+v", st)
	}
	if got := e.events.rules(); !slices.Contains(got, "mfa.locked") {
		t.Fatalf("no lockout event in %v", got)
	}
}

func TestSessions(t *testing.T) {
	e := newEnv(t, mfa.Options{SessionTTL: 2 * time.Minute})
	en := e.enroll()
	ctx := context.Background()
	if _, err := e.m.Login(ctx, "", admin()); !errors.Is(err, mfa.ErrRequired) {
		t.Fatalf("login without code: %v", err)
	}
	s, err := e.m.Login(ctx, e.code(en.secret, 0), admin())
	if err != nil || !strings.HasPrefix(s.Token, mfa.SessionPrefix) || !s.Expires.Equal(e.clock.Now().Add(2*time.Minute)) {
		t.Fatalf("login %v %v", s.Expires, err)
	}
	other := admin()
	other.Principal = "uid:1001"
	for _, tc := range []struct {
		name string
		cred mfa.Credentials
		at   mfa.Attempt
		want mfa.Method
		err  error
	}{
		{"session", mfa.Credentials{Session: s.Token}, admin(), mfa.MethodSession, nil},
		{"another principal", mfa.Credentials{Session: s.Token}, other, "", mfa.ErrSessionInvalid},
		{"code required", mfa.Credentials{Session: s.Token, RequireCode: true}, admin(), "", mfa.ErrRequired},
		{"malformed", mfa.Credentials{Session: "kss_x"}, admin(), "", mfa.ErrSessionInvalid},
		{"unknown", mfa.Credentials{Session: mfa.SessionPrefix + strings.Repeat("A", 43)}, admin(), "", mfa.ErrSessionInvalid},
		{"nothing", mfa.Credentials{}, admin(), "", mfa.ErrRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := e.m.Authorize(ctx, tc.cred, tc.at)
			if m != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("got %q %v, want %q %v", m, err, tc.want, tc.err)
			}
		})
	}
	// A session does not spend a code sent along with it.
	e.clock.Add(mfa.Period)
	c := e.code(en.secret, 0)
	if m, _ := e.m.Authorize(ctx, mfa.Credentials{Session: s.Token, Code: c}, admin()); m != mfa.MethodSession {
		t.Fatalf("method %q", m)
	}
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Code: c}, admin()); err != nil {
		t.Fatalf("code after session use: %v", err)
	}
	// Expiry.
	e.clock.Add(2 * time.Minute)
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Session: s.Token}, admin()); !errors.Is(err, mfa.ErrSessionInvalid) {
		t.Fatalf("expired: %v", err)
	}
	// Logout, and restart ends sessions.
	s2, err := e.m.Login(ctx, e.code(en.secret, mfa.Period), admin())
	if err != nil {
		t.Fatal(err)
	}
	if e.m.Logout(ctx, s2.Token, other) {
		t.Fatal("another principal logged the session out")
	}
	if !e.m.Logout(ctx, s2.Token, admin()) || e.m.Logout(ctx, s2.Token, admin()) {
		t.Fatal("logout")
	}
	e.clock.Add(2 * mfa.Period)
	s3, err := e.m.Login(ctx, e.code(en.secret, 0), admin())
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, err := e.m.Authorize(ctx, mfa.Credentials{Session: s3.Token}, admin()); !errors.Is(err, mfa.ErrSessionInvalid) {
		t.Fatalf("session after restart: %v", err)
	}
}

func TestReset(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	s, err := e.m.Login(ctx, e.code(en.secret, 0), admin())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Reset(ctx, admin()); err != nil {
		t.Fatal(err)
	}
	if err := e.vault.WithCredential(ctx, mfa.SecretName, func(*vault.Credential) error { return nil }); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("secret after reset: %v", err)
	}
	if st, _ := e.m.Status(ctx); st.State != "none" || st.Sessions != 0 || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status %+v", st)
	}
	if _, ok := e.m.SessionExpiry(s.Token, admin().Principal); ok {
		t.Fatal("session survived the reset")
	}
	if err := e.m.Reset(ctx, admin()); !errors.Is(err, mfa.ErrNotEnrolled) {
		t.Fatalf("second reset: %v", err)
	}
	// Enrol again from scratch.
	e.enroll()
}

func TestBadEnrollmentInput(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	good, _ := mfa.NewRecoveryCodes(nil, 10)
	sec, _ := mfa.NewSecret(nil)
	for _, tc := range []struct {
		name   string
		secret string
		codes  []string
	}{
		{"short secret", "JBSWY3DPEHPK3PXP", good},
		{"not base32", strings.Repeat("1", 32), good},
		{"padded", string(sec.Reveal()) + "====", good},
		{"too few codes", string(sec.Reveal()), good[:7]},
		{"repeated code", string(sec.Reveal()), append(good[:9:9], good[0])},
		{"malformed code", string(sec.Reveal()), append(good[:9:9], "123456")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.m.BeginEnrollment(context.Background(), secret.New([]byte(tc.secret)), tc.codes, admin())
			if !errors.Is(err, mfa.ErrInvalidInput) {
				t.Fatalf("want ErrInvalidInput, got %v", err)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatal("error repeats the secret")
			}
		})
	}
	if st, _ := e.m.Status(context.Background()); st.State != "none" {
		t.Fatalf("state %q after refused input", st.State)
	}
}

// TestNoSecretAtRest enrols, uses every kind of code, fails some, and
// then looks for the TOTP secret, the codes used and the recovery codes in
// every file, log line and audit event.
func TestNoSecretAtRest(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	used := []string{e.code(en.secret, 0)}
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Code: used[0]}, admin())
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Code: used[0]}, admin()) // replay
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Code: en.recovery[0]}, admin())
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Code: wrong(used[0])}, admin())
	s, _ := e.m.Login(ctx, e.code(en.secret, mfa.Period), admin())
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Session: s.Token}, admin())
	e.close()

	needles := map[string]string{"secret": string(en.secret.Reveal()), "code": used[0], "session": s.Token}
	raw, _ := mfa.DecodeSecretForTest(en.secret)
	needles["secret hex"] = hex.EncodeToString(raw)
	needles["secret base64"] = base64.StdEncoding.EncodeToString(raw)
	needles["secret raw"] = string(raw)
	for i, rc := range en.recovery {
		needles[fmt.Sprintf("recovery code %d", i)] = rc
		needles[fmt.Sprintf("recovery code %d without dashes", i)] = strings.ReplaceAll(rc, "-", "")
	}
	var haystacks []string
	files := 0
	_ = filepath.Walk(e.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files++
		haystacks = append(haystacks, p+"\x00"+string(b))
		return nil
	})
	if files == 0 {
		t.Fatal("no files")
	}
	haystacks = append(haystacks, "log\x00"+e.log.String())
	for _, ev := range e.events.all() {
		haystacks = append(haystacks, "audit\x00"+ev.Operation+ev.Rule+ev.Error+ev.Path+ev.Source+ev.RequestID)
	}
	for name, n := range needles {
		for _, h := range haystacks {
			if strings.Contains(h, n) {
				where, _, _ := strings.Cut(h, "\x00")
				t.Errorf("%s found in %s", name, where)
			}
		}
	}
	if !strings.Contains(e.log.String(), "mfa.recovery_code") {
		t.Error("the log does not show the events")
	}
}

func TestAuditEvents(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	en := e.enroll()
	ctx := context.Background()
	at := admin()
	_, _ = e.m.Authorize(ctx, mfa.Credentials{Code: e.code(en.secret, 0)}, at)
	ev := e.events.last()
	want := audit.Event{Time: e.clock.Now(), RequestID: "req-1", Source: "uid:1000", Method: "PUT", Path: "/v1/secrets/x",
		Operation: "admin.mfa.verify", Decision: audit.Allow, Rule: "mfa.totp", Status: 200, Error: "action secret.set"}
	if ev != want {
		t.Fatalf("event\n got %+v\nwant %+v", ev, want)
	}
	_, _ = e.m.Authorize(ctx, mfa.Credentials{}, at)
	if ev := e.events.last(); ev.Decision != audit.Deny || ev.Rule != "mfa.required" || ev.Status != 401 {
		t.Fatalf("required event %+v", ev)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	e := newEnv(t, mfa.Options{})
	for _, tc := range []struct {
		name string
		o    mfa.Options
	}{
		{"no store", mfa.Options{Secrets: e.vault}},
		{"no secrets", mfa.Options{Store: e.db.MFA()}},
		{"negative ttl", mfa.Options{Store: e.db.MFA(), Secrets: e.vault, SessionTTL: -time.Second}},
		{"max below lockout", mfa.Options{Store: e.db.MFA(), Secrets: e.vault, Lockout: time.Hour, MaxLockout: time.Minute}},
	} {
		if _, err := mfa.New(tc.o); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
