package config

import (
	"strings"
	"testing"
	"time"
)

const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestAdminKeys(t *testing.T) {
	c, err := Parse("k.yaml", []byte(`admin:
  listen: 10.0.0.5:7879
  tls_cert: /etc/k/admin.crt
  tls_key: /etc/k/admin.key
  allow_cidrs: [10.0.0.0/24, 192.168.1.7, "::ffff:172.16.0.0/108"]
  tokens:
    - {name: laptop, sha256: `+strings.ToUpper(digest)+`}
  mfa:
    session_ttl: 2m
    max_failures: 3
    lockout: 10s
    max_lockout: 10m
    issuer: acme-keystile
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Admin
	if a.Listen != "10.0.0.5:7879" || len(a.AllowCIDRs) != 3 || a.Tokens[0].Name != "laptop" || a.MFA.SessionTTL != 2*time.Minute ||
		a.MFA.MaxFailures != 3 || a.MFA.Lockout != 10*time.Second || a.MFA.MaxLockout != 10*time.Minute || a.MFA.Issuer != "acme-keystile" {
		t.Fatalf("%+v", a)
	}
	d := Default().Admin.MFA
	if d.SessionTTL != 5*time.Minute || d.MaxFailures != 5 || d.Lockout != 30*time.Second || d.MaxLockout != time.Hour || d.Issuer != "keystile" {
		t.Fatalf("defaults %+v", d)
	}
}

func TestAdminErrors(t *testing.T) {
	tok := "\n  tokens:\n    - {name: a, sha256: " + digest + "}\n"
	for _, tc := range []struct {
		name, yaml, key, msg string
	}{
		{"plain off loopback", "admin:\n  listen: 0.0.0.0:7879" + tok, "admin.listen", "over TLS"},
		{"plain on all interfaces", "admin:\n  listen: :7879" + tok, "admin.listen", "over TLS"},
		{"plain on a hostname", "admin:\n  listen: admin.example:7879" + tok, "admin.listen", "over TLS"},
		{"cert without key", "admin:\n  listen: 127.0.0.1:7879\n  tls_cert: /x" + tok, "admin.tls_key", "both or neither"},
		{"no tokens", "admin:\n  listen: 127.0.0.1:7879\n", "admin.tokens", "required with admin.listen"},
		{"tokens without listen", "admin:" + tok, "admin.tokens", "only used with admin.listen"},
		{"cidrs without listen", "admin:\n  allow_cidrs: [10.0.0.0/8]\n", "admin.allow_cidrs", "only used with admin.listen"},
		{"bad cidr", "admin:\n  listen: 127.0.0.1:7879\n  allow_cidrs: [10.0.0.0/33]" + tok, "admin.allow_cidrs[0]", "CIDR"},
		{"hostname cidr", "admin:\n  listen: 127.0.0.1:7879\n  allow_cidrs: [office.example]" + tok, "admin.allow_cidrs[0]", "CIDR"},
		{"short digest", "admin:\n  listen: 127.0.0.1:7879\n  tokens:\n    - {name: a, sha256: abcd}\n", "admin.tokens[0].sha256", "64 hex"},
		{"a token, not a digest", "admin:\n  listen: 127.0.0.1:7879\n  tokens:\n    - {name: a, sha256: ksa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA}\n", "admin.tokens[0].sha256", "never the token"},
		{"duplicate name", "admin:\n  listen: 127.0.0.1:7879\n  tokens:\n    - {name: a, sha256: " + digest + "}\n    - {name: a, sha256: " + strings.Repeat("0", 64) + "}\n", "admin.tokens[1].name", "duplicate"},
		{"duplicate digest", "admin:\n  listen: 127.0.0.1:7879\n  tokens:\n    - {name: a, sha256: " + digest + "}\n    - {name: b, sha256: " + strings.ToUpper(digest) + "}\n", "admin.tokens[1].sha256", "duplicate"},
		{"bad name", "admin:\n  listen: 127.0.0.1:7879\n  tokens:\n    - {name: Bad Name, sha256: " + digest + "}\n", "admin.tokens[0].name", "must match"},
		{"long session", "admin:\n  mfa:\n    session_ttl: 2h\n", "admin.mfa.session_ttl", "at most 1h"},
		{"zero session", "admin:\n  mfa:\n    session_ttl: 0s\n", "admin.mfa.session_ttl", "positive"},
		{"zero failures", "admin:\n  mfa:\n    max_failures: 0\n", "admin.mfa.max_failures", "between 1 and 100"},
		{"many failures", "admin:\n  mfa:\n    max_failures: 1000\n", "admin.mfa.max_failures", "between 1 and 100"},
		{"max below lockout", "admin:\n  mfa:\n    lockout: 10m\n    max_lockout: 1m\n", "admin.mfa.max_lockout", ">= admin.mfa.lockout"},
		{"long lockout", "admin:\n  mfa:\n    max_lockout: 48h\n", "admin.mfa.max_lockout", "at most 24h"},
		{"issuer with colon", "admin:\n  mfa:\n    issuer: a:b\n", "admin.mfa.issuer", "without"},
		{"empty issuer", "admin:\n  mfa:\n    issuer: \"\"\n", "admin.mfa.issuer", "1 to 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("k.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q lacks %s / %q", err, tc.key, tc.msg)
			}
		})
	}
	for _, ok := range []string{
		"admin:\n  listen: 127.0.0.1:0" + tok,
		"admin:\n  listen: localhost:7879" + tok,
		"admin:\n  listen: \"[::1]:7879\"" + tok,
		"admin:\n  listen: 0.0.0.0:7879\n  tls_cert: /c\n  tls_key: /k" + tok,
	} {
		if _, err := Parse("k.yaml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestIsLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "127.9.0.1:1": true, "[::1]:1": true, "localhost:1": true, "LOCALHOST:1": true,
		"[::ffff:127.0.0.1]:1": true, "0.0.0.0:1": false, ":1": false, "10.0.0.1:1": false, "example.com:1": false, "nonsense": false} {
		if got := IsLoopbackListen(addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}
