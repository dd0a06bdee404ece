package app_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
)

// allCanaryCredentials extends canaryCredentials to the five exchanges:
// fixed, recognisable values in the formats the emulators accept.
func allCanaryCredentials() map[string]map[string]string {
	c := canaryCredentials()
	krakenSecret := []byte("CANARY-kraken-secret-0001-" + strings.Repeat("k", 38)) // 64 bytes
	cbSeed := []byte("CANARY-coinbase-ed25519-seed-001")                           // 32 bytes
	c[sandbox.VenueBinance] = map[string]string{
		"api_key": "CANARYbinanceApiKey0001" + strings.Repeat("b", 64-len("CANARYbinanceApiKey0001")),
		"secret":  "CANARY-binance-hmac-secret-0001", // #nosec G101 -- throwaway test canary
	}
	c[sandbox.VenueKraken] = map[string]string{
		"api_key": "CANARYkrakenApiKey0001/+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
		"secret":  base64.StdEncoding.EncodeToString(krakenSecret),
	}
	c[sandbox.VenueOKX] = map[string]string{
		"api_key": "CANARY-okx-api-key-0001", "secret": "CANARYOKXSECRET0001", "passphrase": "CANARY-okx-pass-0001", // #nosec G101 -- throwaway test canary
	}
	c[sandbox.VenueBybit] = map[string]string{"api_key": "CANARYbybitKey0001", "secret": "CANARYbybitSecret0001"} // #nosec G101 -- throwaway test canary
	c[sandbox.VenueCoinbase] = map[string]string{
		"key_name":    "organizations/canary-org-0001/apiKeys/CANARY-coinbase-key-0001",
		"private_key": base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(cbSeed)),
	}
	return c
}

// allNeedles are canaryNeedles plus URL-encoded forms (query and path
// escaping) of every canary, and the raw bytes behind base64-stored
// secrets (Kraken's secret, Coinbase's Ed25519 key and seed).
func allNeedles(creds map[string]map[string]string) []needle {
	out := canaryNeedles(creds)
	for venueID, fields := range creds {
		for name, v := range fields {
			if venueID == sandbox.VenueDMarket && name == "public_key" {
				continue
			}
			for _, e := range []struct{ kind, s string }{{"query-escaped", url.QueryEscape(v)}, {"path-escaped", url.PathEscape(v)}} {
				if e.s != v {
					out = append(out, needle{venueID + "." + name + " (" + e.kind + ")", e.s})
				}
			}
		}
	}
	if raw, err := base64.StdEncoding.DecodeString(creds[sandbox.VenueKraken]["secret"]); err == nil {
		out = append(out, encodedForms("kraken.secret (decoded)", string(raw))...)
	}
	if raw, err := base64.StdEncoding.DecodeString(creds[sandbox.VenueCoinbase]["private_key"]); err == nil {
		out = append(out, encodedForms("coinbase.private_key seed", string(raw[:ed25519.SeedSize]))...)
		out = append(out, needle{"coinbase.private_key (hex)", hex.EncodeToString(raw)})
	}
	return out
}

// TestLeakSweepAllVenues runs the whole demo flow over all ten venues with
// canary credentials (every venue echoing the credential headers it
// receives back to keystile) and greps every byte keystile wrote: every
// answer the bot got (headers and bodies, successes, venue errors and
// gateway refusals), the admin API's answers, the server's debug log, every
// file of the data dir (database, WAL, SHM, key file, audit log when there
// is one) and every file under the server's TMPDIR. The canaries, in raw,
// hex, base64 and URL-encoded forms, the bot's token and the venues'
// session tokens appear nowhere.
func TestLeakSweepAllVenues(t *testing.T) {
	tmp := t.TempDir()
	tmpdir := filepath.Join(tmp, "tmp")
	if err := os.Mkdir(tmpdir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The server runs in this process: os.TempDir (and SQLite's temp
	// files) follow TMPDIR.
	t.Setenv("TMPDIR", tmpdir)
	if os.TempDir() != tmpdir {
		t.Fatalf("os.TempDir() = %q after setting TMPDIR; the temp-file sweep would prove nothing", os.TempDir())
	}
	venues := append(e2eVenues(), exchangeVenues()...)
	creds := allCanaryCredentials()
	h := startHarness(t, harnessOptions{Credentials: creds, Venues: venues})
	for venueID, fields := range creds {
		for k, v := range fields {
			if got := h.info.Venues[venueID].Credentials[k]; got != v {
				t.Fatalf("sandbox %s.%s is not the canary", venueID, k)
			}
		}
	}
	needles := allNeedles(creds)
	minted := h.botToken(t)
	tok := minted.Token
	needles = append(needles, needle{"bot token", tok})

	var seen strings.Builder // every byte the bot and the operator received
	record := func(resp botResponse) { seen.WriteString(resp.raw()) }
	send := func(t *testing.T, id string, r botRequest) botResponse {
		t.Helper()
		resp, err := formCall(h, tok, id, r)
		if err != nil {
			t.Fatalf("%s %s %s: %v", id, r.method, r.path, err)
		}
		record(resp)
		return resp
	}
	for _, v := range venues {
		t.Run(v.id, func(t *testing.T) {
			if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultEchoCredentials, Count: -1}); err != nil {
				t.Fatal(err)
			}
			for _, r := range []botRequest{v.read, v.order} {
				if resp := send(t, v.id, r); resp.status/100 != 2 {
					t.Fatalf("%s %s: status %d: %.300s", r.method, r.path, resp.status, resp.body)
				}
			}
			// SDK mode: the bot's own (placeholder) signature and the
			// kst_ token where the key goes.
			if isExchange(v.id) {
				r := v.read
				resp := h.sdkCall(t, tok, v.id, r)
				record(resp)
				if resp.status != http.StatusOK {
					t.Errorf("SDK mode %s %s: status %d", r.method, r.path, resp.status)
				}
			}
			// Venue errors (which may quote a request) and keystile's
			// refusals are swept too.
			if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusInternalServerError, PathPrefix: strings.SplitN(v.read.path, "?", 2)[0]}); err != nil {
				t.Fatal(err)
			}
			send(t, v.id, v.read)
			send(t, v.id, botRequest{"GET", "/keystile-leak-sweep/unmapped?secret=x", ""})
			if st := h.sb.Stats(v.id); st.AuthFailures != 0 {
				t.Errorf("sandbox auth failures: %d", st.AuthFailures)
			}
			_ = h.sb.ClearFaults(v.id)
		})
	}
	// A revoked token, and what the operator sees through the admin API.
	ctx := context.Background()
	if _, err := h.admin.TokenAction(ctx, minted.Info.ID, "revoke"); err != nil {
		t.Fatal(err)
	}
	if resp := send(t, venues[0].id, venues[0].read); resp.status != http.StatusUnauthorized {
		t.Errorf("revoked token: status %d", resp.status)
	}
	for _, v := range venues {
		info, err := h.admin.ShowSecret(ctx, "e2e-"+v.id)
		if err != nil {
			t.Fatal(err)
		}
		seen.WriteString(jsonString(t, info))
	}
	list, err := h.admin.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen.WriteString(jsonString(t, list))
	tokens, err := h.admin.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen.WriteString(jsonString(t, tokens))

	// Stop the server so that every file is flushed and closed.
	if err := h.stop(); err != nil {
		t.Fatalf("server run: %v", err)
	}
	logs := h.log.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "gateway: request") {
		t.Fatal("the server log holds no debug or request lines; the log sweep would prove nothing")
	}
	if !strings.Contains(seen.String(), "sandbox_echo") {
		t.Fatal("no venue echoed credentials; the answer sweep would prove nothing")
	}
	for what, s := range map[string]string{"answers": seen.String(), "server log": logs} {
		if f := findNeedles(s, needles); len(f) > 0 {
			t.Errorf("secrets in the %s: %q", what, f)
		}
		if sessionTokenRE.MatchString(s) {
			t.Errorf("a venue session token is in the %s", what)
		}
	}
	n, leaks := sweepDataDir(t, h.dataDir, needles)
	if n < 2 {
		t.Fatalf("swept only %d files of the data dir", n)
	}
	if len(leaks) > 0 {
		t.Errorf("secrets in the data dir: %q", leaks)
	}
	if files := sweepDataDirRE(t, h.dataDir, sessionTokenRE); len(files) > 0 {
		t.Errorf("a venue session token is in %q", files)
	}
	// Every file under TMPDIR except the data dir (swept above) and the
	// harness's own inputs (the sandbox CA's certificate).
	tn, tleaks := sweepDataDir(t, tmpdir, needles)
	if len(tleaks) > 0 {
		t.Errorf("secrets in temp files: %q", tleaks)
	}
	var names []string
	_ = filepath.WalkDir(tmpdir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(tmpdir, p)
			names = append(names, rel)
		}
		return nil
	})
	t.Logf("swept %d bytes of answers, %d bytes of log, %d data-dir files, %d files under TMPDIR (%d needles)",
		seen.Len(), len(logs), n, tn, len(needles))
	t.Logf("files under TMPDIR: %q", names)
}

// isExchange reports whether id is one of the crypto exchanges (SDK mode).
func isExchange(id string) bool {
	for _, v := range exchangeVenues() {
		if v.id == id {
			return true
		}
	}
	return false
}

// jsonString renders v for the sweep.
func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
