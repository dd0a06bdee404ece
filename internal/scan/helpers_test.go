package scan_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// Values held in the test vault; the corpus plants them in files.
var heldValues = map[string]map[string]string{
	"dmarket": {
		"secret":     "b796198b29040673cf7ad132c60f40fff8eb0d2b9e691547521124ba1d5fb7182c22ac18586ab1e6a9e5204ab72f1b18015b48e6e471d1656a3342f6c0261821",
		"public_key": "8e4fb627b7abf14c9c21f418d0bed9487e425026165716a47c0f5859f279e4be",
	},
	"betfair": {"app_key": "CwVXX50SCfziPrNt", "password": "mlcS7FUNC2HGIKZ8WNPZY9YP", "username": "alice"},
	"stake":   {"access_token": "117a7add6711e548d3d97196c0ec1aa75177fa816d7b15d814406575e9eb0e4f64c83d183b213eeb53897d79b544993c"},
}

// plantedSecrets are every secret value in testdata/corpus/planted: no
// output may contain one (nor its hex or base64 form).
var plantedSecrets = []string{
	"kst_live_Wo6QcJrnqWtgLeQ5c8kVhXE1TIqAsVaczUmRfRbdifV4EC7oa",
	"kst_test_lLHC33zuaCGDNryMOgDdxM8Nh8NGiQo57k9YK6f3V1v26hkia",
	"kst_live_CSEOyKiNZRjSsdj9D7FKZpKDDmPPNBxZauzGp5gLReI3gCykB",
	"AKIA2MATW2ZCEFAQJ4B6",
	"RuMnegD8YucUJ+XXQUsp/601K4AA3i4l3IaXDYc9",
	"ghp_PJnjQSHxhJVsxSz89WTRvK8YxiRiX2SOhSGP",
	"xoxb-341249418786-5565661048021-v6hxtDgugvQxyhfkdlqsH4Bd",
	"MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAL",
}

// newTestVault makes a SQLite-backed vault in t.TempDir() holding heldValues.
func newTestVault(t testing.TB) *vault.Vault {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	rk := make([]byte, vault.KeySize)
	if _, err := rand.Read(rk); err != nil {
		t.Fatal(err)
	}
	root := secret.New(rk)
	if err := vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{"source":"file"}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	for name, fs := range heldValues {
		m := map[string]secret.Value{}
		for k, val := range fs {
			m[k] = secret.FromString(val)
		}
		if _, err := v.Set(ctx, name, m, vault.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return v
}
