package doctor_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/doctor"
	"github.com/keystile/keystile/internal/vault"
)

// auditLog writes a real audit log (SQLite, as serve keeps it) with keys
// derived from the fixture's vault, and points doctor at it.
func (f *fixture) auditLog(ctx context.Context, dir string, v *vault.Vault) {
	f.t.Helper()
	seed, err := v.DeriveKey("audit.checkpoint.v1")
	if err != nil {
		f.t.Fatal(err)
	}
	id, err := v.DeriveKey("audit.identity.v1")
	if err != nil {
		f.t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed.Reveal())
	path := filepath.Join(dir, "audit.db")
	st, err := audit.OpenSQLite(ctx, path)
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := audit.Open(ctx, audit.Options{Store: st, Keys: audit.Keys{Checkpoint: priv, Identity: id.Reveal()}, CheckpointEvery: 3})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range 5 {
		e := audit.Event{Time: time.Unix(1_700_000_000+int64(i), 0), RequestID: "r", TokenID: "tok_x", Venue: "dmarket",
			Method: "POST", Path: "/orders", Operation: "order.place", Decision: audit.Allow, Status: 200}
		if err := l.Intent(ctx, e); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.auditPath = path
	pub := priv.Public().(ed25519.PublicKey)
	f.auditVerify = func(ctx context.Context) (audit.Report, error) {
		r, err := audit.OpenSQLiteReader(ctx, path)
		if err != nil {
			return audit.Report{}, err
		}
		defer r.Close()
		return audit.Verify(ctx, r, pub)
	}
}

// TestAuditChainFails: one changed byte in a stored record fails the
// check, naming the record; without a verifier the check skips with the
// reason.
func TestAuditChainFails(t *testing.T) {
	f := newFixture(t)
	db, err := sql.Open("sqlite", f.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	if err := db.QueryRow(`SELECT data FROM audit_records WHERE seq = 2`).Scan(&data); err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), `"status":200`, `"status":201`, 1))
	if _, err := db.Exec(`UPDATE audit_records SET data = ? WHERE seq = 2`, data); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	c, _ := f.run().Find("audit.chain")
	if c.Result != doctor.Fail || !strings.Contains(c.Detail, "2") || c.Fix == "" {
		t.Fatalf("tampered log: %s %q", c.Result, c.Detail)
	}

	f.o.AuditVerify, f.o.AuditReason = nil, "no audit log yet"
	c, _ = f.run().Find("audit.chain")
	if c.Result != doctor.Skip || c.Detail != "no audit log yet" {
		t.Fatalf("no verifier: %s %q", c.Result, c.Detail)
	}
}
