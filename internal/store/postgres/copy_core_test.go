package postgres_test

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/vault"
)

// TestCoreCopyFromSQLite: the core tables of a SQLite database in use,
// copied row for row with no conversion (then ResetIdentities), read back through the PostgreSQL stores
// exactly as through the SQLite ones, and the stores go on from there.
func TestCoreCopyFromSQLite(t *testing.T) {
	ctx := context.Background()
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	at := time.Date(2026, 4, 5, 6, 7, 8, 9, time.UTC)
	secs := at.Truncate(time.Second)

	// A SQLite database in use.
	kek := vault.KEKRecord{Version: 1, Wrapped: []byte("kek"), CreatedAt: secs, Active: true}
	mustCore(t, lite.Vault().Init(ctx, map[string][]byte{"salt": {1, 2, 3}}, kek, []vault.SystemKeyRecord{{Name: "mac", KEKVersion: 1, Wrapped: []byte("m")}}))
	cred := vault.CredentialRecord{Name: "binance", CurrentVersion: 1, State: "active", CreatedAt: secs, RotatedAt: secs, MAC: []byte("mac")}
	mustCore(t, lite.Vault().PutVersion(ctx, cred, vault.VersionRecord{Name: "binance", Version: 1, KEKVersion: 1, WrappedDEK: []byte("dek"),
		CreatedAt: secs, Fields: map[string][]byte{"secret": []byte("sealed")}}, 0))
	mustCore(t, lite.Vault().PutVersion(ctx, vault.CredentialRecord{Name: "old", CurrentVersion: 1, State: "revoked", CreatedAt: secs, RotatedAt: secs, MAC: []byte("x")},
		vault.VersionRecord{Name: "old", Version: 1, KEKVersion: 1, WrappedDEK: []byte("d"), CreatedAt: secs}, 0))
	mustCore(t, lite.Vault().Revoke(ctx, vault.CredentialRecord{Name: "old", State: "revoked", RevokedAt: secs, MAC: []byte("y")},
		[]vault.Fingerprint{{Value: []byte("fp"), Name: "old", Field: "secret", RevokedAt: secs}}))
	mustCore(t, lite.Vault().TouchUsed(ctx, map[string]time.Time{"binance": secs.Add(time.Hour)}))
	tok := storetest.TokenRecord("tok_a")
	tok.RevokedAt = at
	mustCore(t, lite.Tokens().Create(ctx, tok))
	mustCore(t, lite.Tokens().Create(ctx, storetest.TokenRecord("tok_b")))
	if _, _, err := lite.Nonces().Reserve(ctx, "key:1", 1_700_000_000_000_000, 10); err != nil {
		t.Fatal(err)
	}
	_, err = lite.MFA().Update(ctx, func(st *mfa.State) error {
		*st = mfa.State{State: mfa.StateActive, CreatedAt: at, EnrolledAt: at, LastStep: 7}
		return nil
	})
	mustCore(t, err)
	d := sha256.Sum256([]byte("code"))
	mustCore(t, lite.MFA().SetRecoveryCodes(ctx, [][]byte{d[:]}))
	for i := range 3 {
		mustCore(t, lite.Alerts().AddDigest(ctx, "mail", alert.Alert{ID: "alr_x", Time: at.Add(time.Duration(i) * time.Second), Severity: alert.SeverityLow, Count: 1}))
	}
	_, _, err = lite.Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeVenue, Target: "kraken", Rule: "r", Actor: "a", EngagedAt: at})
	mustCore(t, err)
	_, err = lite.Trips().Clear(ctx, killswitch.Filter{}, "admin", "ok", at.Add(time.Minute))
	mustCore(t, err)
	_, _, err = lite.Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a", EngagedAt: at})
	mustCore(t, err)
	mustCore(t, lite.Detect().SaveProfiles(ctx, []detect.StoredProfile{{Key: "admin", Data: []byte(`{}`), Updated: at}}, nil))
	mustCore(t, lite.Detect().PutHold(ctx, detect.Hold{Kind: detect.HoldThrottle, Subject: "tok_a", Since: at, Until: at.Add(time.Hour), Requests: 3, Per: time.Minute}))

	// The copy: every column as SQLite returns it, in table order (parents
	// first), then the identity sequences.
	pg := openTest(t)
	for _, table := range postgres.CoreTables() {
		rows, err := lite.SQL().QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var data [][]any
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			data = append(data, vals)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.Pool().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(data)); err != nil {
			t.Fatalf("copy %s (%s): %v", table, strings.Join(cols, ", "), err)
		}
	}
	mustCore(t, pg.ResetIdentities(ctx))

	// Read through both, compare.
	same := func(what string, l, p any, lerr, perr error) {
		t.Helper()
		if lerr != nil || perr != nil || !reflect.DeepEqual(l, p) {
			t.Errorf("%s differs:\nsqlite   %+v (%v)\npostgres %+v (%v)", what, l, lerr, p, perr)
		}
	}
	lk, ls, lerr := lite.Vault().Keyring(ctx)
	pk, ps, perr := pg.Vault().Keyring(ctx)
	same("keyring", []any{lk, ls}, []any{pk, ps}, lerr, perr)
	lc, lerr := lite.Vault().Credentials(ctx)
	pc, perr := pg.Vault().Credentials(ctx)
	same("credentials", lc, pc, lerr, perr)
	lv, lerr := lite.Vault().Version(ctx, "binance", 1)
	pv, perr := pg.Vault().Version(ctx, "binance", 1)
	same("version", lv, pv, lerr, perr)
	lf, lerr := lite.Vault().CompromisedAll(ctx)
	pf, perr := pg.Vault().CompromisedAll(ctx)
	same("fingerprints", lf, pf, lerr, perr)
	lt, lerr := lite.Tokens().All(ctx)
	pt, perr := pg.Tokens().All(ctx)
	same("tokens", lt, pt, lerr, perr)
	lm, lerr := lite.MFA().Load(ctx)
	pm, perr := pg.MFA().Load(ctx)
	same("mfa", lm, pm, lerr, perr)
	la, lerr := lite.Alerts().PendingDigest(ctx, "mail", 0)
	pa, perr := pg.Alerts().PendingDigest(ctx, "mail", 0)
	same("digest", la, pa, lerr, perr)
	ltr, lerr := lite.Trips().Active(ctx)
	ptr, perr := pg.Trips().Active(ctx)
	same("trips", ltr, ptr, lerr, perr)
	lcl, lerr := lite.Trips().LastClear(ctx, killswitch.ScopeVenue, "kraken")
	pcl, perr := pg.Trips().LastClear(ctx, killswitch.ScopeVenue, "kraken")
	same("last clear", lcl, pcl, lerr, perr)
	lp, lerr := lite.Detect().Profiles(ctx)
	pp, perr := pg.Detect().Profiles(ctx)
	same("profiles", lp, pp, lerr, perr)
	lh, lerr := lite.Detect().Holds(ctx)
	ph, perr := pg.Detect().Holds(ctx)
	same("holds", lh, ph, lerr, perr)
	ln, _, lerr := lite.Nonces().Reserve(ctx, "key:1", 0, 1)
	pn, _, perr := pg.Nonces().Reserve(ctx, "key:1", 0, 1)
	same("next nonce", ln, pn, lerr, perr)

	// The stores go on: new rows get fresh ids.
	mustCore(t, pg.Alerts().AddDigest(ctx, "mail", alert.Alert{ID: "alr_y", Time: at, Severity: alert.SeverityLow, Count: 1}))
	items, err := pg.Alerts().PendingDigest(ctx, "mail", 0)
	if err != nil || len(items) != 4 || items[3].Seq <= items[2].Seq {
		t.Fatalf("digest after the copy: %+v %v", items, err)
	}
	tr, created, err := pg.Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeVenue, Target: "kraken", Rule: "r", Actor: "a", EngagedAt: at})
	if err != nil || !created || tr.ID <= ptr[0].ID {
		t.Fatalf("engage after the copy: %+v %v %v", tr, created, err)
	}
}

func mustCore(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
