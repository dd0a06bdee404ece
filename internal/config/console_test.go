package config

import (
	"strings"
	"testing"
	"time"
)

func TestConsoleKeys(t *testing.T) {
	c, err := Parse("k.yaml", []byte(`admin:
  tokens:
    - {name: laptop, sha256: `+digest+`}
console:
  listen: 10.0.0.5:7880
  tls_cert: /etc/k/console.crt
  tls_key: /etc/k/console.key
  allow_cidrs: [10.0.0.0/24, 192.168.1.7]
  session_ttl: 2h
  idle_timeout: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Console
	if k.Listen != "10.0.0.5:7880" || k.TLSCert == "" || len(k.AllowCIDRs) != 2 || k.SessionTTL != 2*time.Hour || k.IdleTimeout != 10*time.Minute {
		t.Fatalf("%+v", k)
	}
	d := Default().Console
	if d.Listen != "" || d.SessionTTL != time.Hour || d.IdleTimeout != 15*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
}

func TestConsoleErrors(t *testing.T) {
	tok := "admin:\n  tokens:\n    - {name: a, sha256: " + digest + "}\n"
	for _, tc := range []struct {
		name, yaml, key, msg string
	}{
		{"plain off loopback", tok + "console:\n  listen: 0.0.0.0:7880\n", "console.listen", "only over TLS"},
		{"plain on all interfaces", tok + "console:\n  listen: :7880\n", "console.listen", "only over TLS"},
		{"plain on a hostname", tok + "console:\n  listen: console.example:7880\n", "console.listen", "only over TLS"},
		{"plain on a mapped address", tok + "console:\n  listen: \"[::ffff:10.0.0.1]:7880\"\n", "console.listen", "only over TLS"},
		{"no admin token", "console:\n  listen: 127.0.0.1:7880\n", "console.listen", "admin.tokens"},
		{"cert without key", tok + "console:\n  listen: 127.0.0.1:7880\n  tls_cert: /x\n", "console.tls_key", "both or neither"},
		{"cert without listen", "console:\n  tls_cert: /x\n  tls_key: /y\n", "console.tls_cert", "only used with console.listen"},
		{"local CA and own cert", tok + "console:\n  listen: 127.0.0.1:7880\n  tls_local_ca: true\n  tls_cert: /c\n  tls_key: /k\n", "console.tls_local_ca", "not both"},
		{"names without local CA", tok + "console:\n  listen: 127.0.0.1:7880\n  tls_names: [console.example]\n", "console.tls_names", "only used with console.tls_local_ca"},
		{"local CA without listen", "console:\n  tls_local_ca: true\n", "console.tls_local_ca", "only used with console.listen"},
		{"cidrs without listen", "console:\n  allow_cidrs: [10.0.0.0/8]\n", "console.allow_cidrs", "only used with console.listen"},
		{"bad cidr", tok + "console:\n  listen: 127.0.0.1:7880\n  allow_cidrs: [10.0.0.0/33]\n", "console.allow_cidrs[0]", "CIDR"},
		{"bad port", tok + "console:\n  listen: 127.0.0.1:99999\n", "console.listen", "invalid port"},
		{"long session", "console:\n  session_ttl: 24h\n", "console.session_ttl", "at most 12h"},
		{"zero session", "console:\n  session_ttl: 0s\n", "console.session_ttl", "positive"},
		{"negative idle", "console:\n  idle_timeout: -1m\n", "console.idle_timeout", "positive"},
		{"idle above ttl", "console:\n  session_ttl: 10m\n  idle_timeout: 20m\n", "console.idle_timeout", "at most console.session_ttl"},
		{"unknown key", "console:\n  listn: 127.0.0.1:7880\n", "console.listn", "listen"},
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
		tok + "console:\n  listen: 127.0.0.1:0\n",
		tok + "console:\n  listen: localhost:7880\n",
		tok + "console:\n  listen: \"[::1]:7880\"\n",
		tok + "console:\n  listen: 0.0.0.0:7880\n  tls_cert: /c\n  tls_key: /k\n  allow_cidrs: [10.0.0.0/8]\n",
		tok + "console:\n  listen: 0.0.0.0:7880\n  tls_local_ca: true\n  tls_names: [console.example, 10.0.0.5]\n  allow_cidrs: [10.0.0.0/8]\n",
		// admin.tokens serve the console without the TCP admin listener.
		tok + "console:\n  listen: 127.0.0.1:7880\n",
	} {
		if _, err := Parse("k.yaml", []byte(ok)); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}
