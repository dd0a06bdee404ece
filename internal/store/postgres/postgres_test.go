package postgres_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/store/postgres"
)

// openTest opens a migrated database on a fresh schema of the server named
// by KEYSTILE_TEST_POSTGRES, dropped when the test ends.
func openTest(t testing.TB) *postgres.DB {
	t.Helper()
	return openDSN(t, testDSN(t))
}

// testDSN is a DSN for a fresh schema (dropped when the test ends).
func testDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set: skipping the PostgreSQL store tests (e.g. KEYSTILE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn, drop, err := postgres.TestSchema(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return dsn
}

func openDSN(t testing.TB, dsn string) *postgres.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestMigrateConcurrentReplicas(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	if db, err := postgres.Open(ctx, postgres.Options{DSN: dsn}); err == nil {
		_ = db.Close()
		t.Fatal("Open without Migrate on an empty schema succeeded")
	} else if !strings.Contains(err.Error(), "keystile migrate") {
		t.Fatalf("Open on an empty schema: %v (want a hint to run keystile migrate)", err)
	}
	const replicas = 4
	var wg sync.WaitGroup
	applied := make([][]int, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := openNoMigrate(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer func() { _ = db.Close() }()
			applied[i], errs[i] = db.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != postgres.Latest() {
		t.Fatalf("migrations applied %d times across %d replicas, want each of %d once", total, replicas, postgres.Latest())
	}
	db := openDSN(t, dsn)
	v, err := db.SchemaVersion(ctx)
	if err != nil || v != postgres.Latest() {
		t.Fatalf("schema version %d, %v; want %d", v, err, postgres.Latest())
	}
}

// openNoMigrate opens without checking the schema version, the way
// `keystile migrate` does.
func openNoMigrate(ctx context.Context, dsn string) (*postgres.DB, error) {
	return postgres.OpenForMigration(ctx, postgres.Options{DSN: dsn})
}

func TestOpenErrorsKeepThePasswordOut(t *testing.T) {
	const canary = "CANARYpw7f3e9a1b"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://u:" + canary + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=1",
		"postgres://u:" + canary + "@[::1/db",
		"host=127.0.0.1 port=1 password=" + canary + " sslmode=disable connect_timeout=1",
		"host=127.0.0.1 port=nope password=" + canary,
	} {
		_, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", "redacted")
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("the error quotes the password: %v", err)
		}
	}
}

func TestSchemaNewerThanBinaryIsRefused(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `INSERT INTO schema_migrations(version, name) VALUES ($1, 'future')`, postgres.Latest()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer than this keystile") {
		t.Fatalf("Migrate on a newer schema: %v", err)
	}
}
