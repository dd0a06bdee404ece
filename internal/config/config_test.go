package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const base = `venues:
  dm:
    type: dmarket
    credential: dm-main
    base_url: https://api.dmarket.com
`

func TestExampleFileParses(t *testing.T) {
	c, err := Load("testdata/keystile.example.yaml")
	if err != nil {
		t.Fatalf("example: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("revalidate: %v", err)
	}
	if got := len(c.Venues); got != 11 {
		t.Fatalf("venues = %d, want 11", got)
	}
	if got := c.Venues["binance-sandbox"].ProxyHosts; len(got) != 3 {
		t.Fatalf("binance-sandbox proxy_hosts = %v", got)
	}
	if c.Venues["kraken"].Tier != "starter" || c.Venues["binance"].TestBaseURL == "" {
		t.Fatalf("exchange venues: %+v %+v", c.Venues["kraken"], c.Venues["binance"])
	}
	dm := c.Venues["dmarket"]
	if dm.Timeouts.Total != 30*time.Second || dm.Retry.MaxAttempts != 3 || dm.TLS.MinVersion != "1.2" {
		t.Errorf("dmarket = %+v", dm)
	}
	if a := c.Venues["myexchange"].Auth; a == nil || a.HMAC.Template != "{timestamp}{method}{path}{query}{body}" {
		t.Errorf("myexchange auth = %+v", a)
	}
	if c.Venues["betfair"].Login != "certlogin" {
		t.Errorf("betfair login default not applied")
	}
	if rc := c.Venues["signed"].Auth.RFC9421; !reflect.DeepEqual(rc.Components, []string{"@method", "@authority", "@path", "content-digest"}) {
		t.Errorf("rfc9421 components = %v", rc.Components)
	}
	// The example documents the defaults: its top-level sections equal Default().
	d := Default()
	if !reflect.DeepEqual(c.Log, d.Log) || !reflect.DeepEqual(c.Gateway, d.Gateway) || !reflect.DeepEqual(c.Tokens, d.Tokens) || !reflect.DeepEqual(c.MasterKey, d.MasterKey) ||
		!reflect.DeepEqual(c.Admin.MFA, d.Admin.MFA) {
		t.Errorf("example top-level sections differ from Default()")
	}
}

func TestDefaultsAndZeroValue(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default invalid: %v", err)
	}
	if err := (&Config{}).Validate(); err != nil {
		t.Fatalf("zero Config invalid: %v", err)
	}
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatalf("empty: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("empty file != Default(): %+v", c)
	}
	c, err = Parse("k.yaml", []byte("gateway:\n  listen: \"\"\n  read_timeout:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Listen != "" || c.Gateway.ReadTimeout != 30*time.Second {
		t.Errorf("listen %q (want disabled), read_timeout %s (null keeps default)", c.Gateway.Listen, c.Gateway.ReadTimeout)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadUsesPathInErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keystile.yaml")
	if err := os.WriteFile(p, []byte("log:\n  levle: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2:3: log.levle: unknown key \"levle\"") {
		t.Fatalf("err = %v", err)
	}
}

// TestErrors checks every validation rule: the error names the exact
// line, column and key.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // file:line:col: key: msg prefix
	}{
		{"unknown top-level key", "lgo: {}\n", `keystile.yaml:1:1: lgo: unknown key "lgo" (did you mean "log"?)`},
		{"unknown nested key", base + "    timeouts:\n      totl: 5s\n", `keystile.yaml:7:7: venues.dm.timeouts.totl: unknown key "totl" (did you mean "total"?)`},
		{"unknown key no suggestion", "gateway:\n  zzzzzzzzzz: 1\n", `keystile.yaml:2:3: gateway.zzzzzzzzzz: unknown key "zzzzzzzzzz"`},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", `keystile.yaml:3:3: invalid YAML: mapping key "level" already defined`},
		{"wrong type int", "gateway:\n  max_body_bytes: big\n", `keystile.yaml:2:3: gateway.max_body_bytes: must be an integer, got a string`},
		{"wrong type bool", base + "    sandbox: yes please\n", `keystile.yaml:6:5: venues.dm.sandbox: must be true or false, got a string`},
		{"wrong type string", base + "    credential2: x\n", `keystile.yaml:6:5: venues.dm.credential2: unknown key`},
		{"number for string", base + "    tls:\n      min_version: 1.3\n", `keystile.yaml:7:7: venues.dm.tls.min_version: must be a string, got a number (quote it: "1.3")`},
		{"list for string", "data_dir: [a]\n", `keystile.yaml:1:1: data_dir: must be a string, got a list`},
		{"proxy listen", "proxy:\n  listen: \"7879\"\n", `keystile.yaml:2:3: proxy.listen: must be host:port`},
		{"proxy on the gateway's address", "gateway:\n  listen: 127.0.0.1:7878\nproxy:\n  listen: 127.0.0.1:7878\n", `keystile.yaml:4:3: proxy.listen: must differ from gateway.listen`},
		{"proxy max tunnels", "proxy:\n  max_tunnels: 0\n", `keystile.yaml:2:3: proxy.max_tunnels: must be positive`},
		{"leaf ttl too short", "local_ca:\n  leaf_ttl: 1m\n", `keystile.yaml:2:3: local_ca.leaf_ttl: must be between 10m and 720h`},
		{"gateway tls both sources", "gateway:\n  tls:\n    local_ca: true\n    cert_file: /etc/k.pem\n    key: file:/etc/k.key\n", `keystile.yaml:3:5: gateway.tls.local_ca: use either local_ca or cert_file and key, not both`},
		{"gateway tls cert without key", "gateway:\n  tls:\n    cert_file: /etc/k.pem\n", `keystile.yaml:2:3: gateway.tls.key: required with cert_file`},
		{"gateway tls key inline", "gateway:\n  tls:\n    cert_file: /etc/k.pem\n    key: \"-----BEGIN EC PRIVATE KEY-----\"\n", `keystile.yaml:4:5: gateway.tls.key: must be a secret reference`},
		{"gateway tls bad name", "gateway:\n  tls:\n    local_ca: true\n    names: [\"*.example.com\"]\n", `keystile.yaml:4:13: gateway.tls.names[0]: must be a DNS name or an IP address`},
		{"gateway tls names without local ca", "gateway:\n  tls:\n    names: [localhost]\n", `keystile.yaml:3:5: gateway.tls.names: only used with local_ca: true`},
		{"gateway tls version", "gateway:\n  tls:\n    local_ca: true\n    min_version: \"1.1\"\n", `keystile.yaml:4:5: gateway.tls.min_version: must be one of 1.2|1.3`},
		{"mapping expected", "gateway: 5\n", `keystile.yaml:1:1: gateway: must be a mapping, got an integer`},
		{"bad duration", "tokens:\n  default_ttl: 1day\n", `keystile.yaml:2:3: tokens.default_ttl: invalid duration "1day"`},
		{"integer duration", "tokens:\n  default_ttl: 5\n", `keystile.yaml:2:3: tokens.default_ttl: must be a duration string like "5s", got an integer`},
		{"venue id pattern", "venues:\n  Bad.Id:\n    type: dmarket\n    credential: c\n    base_url: https://a.example\n", `keystile.yaml:2:3: venues.Bad.Id: invalid venue id "Bad.Id"`},
		{"venue id too long", "venues:\n  " + strings.Repeat("a", 33) + ":\n    type: dmarket\n    credential: c\n    base_url: https://a.example\n", `keystile.yaml:2:3: venues.` + strings.Repeat("a", 33) + `: invalid venue id`},
		{"missing type", "venues:\n  dm:\n    credential: c\n    base_url: https://a.example\n", `keystile.yaml:2:3: venues.dm.type: required`},
		{"missing credential", "venues:\n  dm:\n    type: dmarket\n    base_url: https://a.example\n", `keystile.yaml:2:3: venues.dm.credential: required`},
		{"missing base_url", "venues:\n  dm:\n    type: dmarket\n    credential: c\n", `keystile.yaml:2:3: venues.dm.base_url: required`},
		{"unknown type", "venues:\n  dm:\n    type: binanse\n    credential: c\n    base_url: https://a.example\n", `keystile.yaml:3:5: venues.dm.type: must be one of stake|dmarket|betfair|stapi|generic|binance|kraken|okx|bybit|coinbase, got "binanse"`},
		{"http without sandbox", "venues:\n  bf:\n    type: betfair\n    credential: c\n\n\n\n\n    base_url: http://127.0.0.1:8080\n", `keystile.yaml:9:5: venues.bf.base_url: must be https:// (plain http only with sandbox: true to a loopback host)`},
		{"http sandbox non-loopback", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    sandbox: true\n    base_url: http://api.dmarket.com\n", `keystile.yaml:6:5: venues.dm.base_url: must be https://: sandbox allows http:// only to a loopback host, got "api.dmarket.com"`},
		{"http sandbox 10/8", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    sandbox: true\n    base_url: http://10.0.0.1\n", `keystile.yaml:6:5: venues.dm.base_url: must be https://: sandbox allows`},
		{"ftp scheme", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    base_url: ftp://a.example\n", `keystile.yaml:5:5: venues.dm.base_url: must be https://`},
		{"userinfo", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    base_url: https://u:p@a.example\n", `keystile.yaml:5:5: venues.dm.base_url: must not contain userinfo`},
		{"query", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    base_url: https://a.example/?k=v\n", `keystile.yaml:5:5: venues.dm.base_url: must not contain a query`},
		{"fragment", "venues:\n  dm:\n    type: dmarket\n    credential: c\n    test_base_url: https://a.example/#x\n    base_url: https://a.example\n", `keystile.yaml:5:5: venues.dm.test_base_url: must not contain a fragment`},
		{"tls 1.1", base + "    tls:\n      min_version: \"1.1\"\n", `keystile.yaml:7:7: venues.dm.tls.min_version: TLS below 1.2 is not allowed, got "1.1"`},
		{"tls garbage", base + "    tls:\n      min_version: \"tls13\"\n", `keystile.yaml:7:7: venues.dm.tls.min_version: must be "1.2" or "1.3"`},
		{"timeout zero", base + "    timeouts:\n      connect: 0s\n", `keystile.yaml:7:7: venues.dm.timeouts.connect: must be positive, got 0s`},
		{"timeout negative", base + "    timeouts: {tls_handshake: -1s}\n", `keystile.yaml:6:16: venues.dm.timeouts.tls_handshake: must be positive, got -1s`},
		{"total < response_header", base + "    timeouts:\n      response_header: 20s\n      total: 10s\n", `keystile.yaml:8:7: venues.dm.timeouts.total: must be >= timeouts.response_header (20s), got 10s`},
		{"total < default response_header", base + "    timeouts:\n      total: 10s\n", `keystile.yaml:7:7: venues.dm.timeouts.total: must be >= timeouts.response_header (15s), got 10s`},
		{"retry 0", base + "    retry:\n      max_attempts: 0\n", `keystile.yaml:7:7: venues.dm.retry.max_attempts: must be between 1 and 10, got 0`},
		{"retry 11", base + "    retry:\n      max_attempts: 11\n", `keystile.yaml:7:7: venues.dm.retry.max_attempts: must be between 1 and 10, got 11`},
		{"auth on dmarket", base + "    auth:\n      scheme: header\n", `keystile.yaml:6:5: venues.dm.auth: not allowed for type dmarket`},
		{"generic without operations", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth: {scheme: bearer}\n", `keystile.yaml:2:3: venues.g.operations: required for type generic`},
		{"operations on a built-in venue", "venues:\n  d:\n    type: dmarket\n    credential: c\n    base_url: https://a.example\n    operations: [{method: GET, path: /x, op: market.read}]\n", `keystile.yaml:6:5: venues.d.operations: not allowed for type dmarket`},
		{"bad operation", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth: {scheme: bearer}\n    operations:\n      - {method: get, path: x, op: Order}\n", `venues.g.operations[0].method: must be an upper-case HTTP method`},
		{"generic without auth", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n", `keystile.yaml:2:3: venues.g.auth: required for type generic`},
		{"unknown scheme", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: digest\n", `keystile.yaml:7:7: venues.g.auth.scheme: must be one of header|bearer|basic|query|hmac|rfc9421|ed25519|sigv4|oauth2, got "digest"`},
		{"unknown placeholder", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac:\n        signature_header: X-S\n        template: \"{timestamp}{secret}\"\n", `keystile.yaml:10:9: venues.g.auth.hmac.template: unknown placeholder {secret}`},
		{"unterminated placeholder", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac: {signature_header: X-S, template: \"{method\"}\n", `keystile.yaml:8:37: venues.g.auth.hmac.template: unterminated "{" in template`},
		{"unknown algorithm", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac:\n        template: \"{body}\"\n        signature_header: X-S\n        algorithm: md5\n", `keystile.yaml:11:9: venues.g.auth.hmac.algorithm: must be one of sha256|sha384|sha512, got "md5"`},
		{"unknown encoding", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac:\n        template: \"{body}\"\n        signature_header: X-S\n        encoding: base32\n", `keystile.yaml:11:9: venues.g.auth.hmac.encoding: must be one of hex|base64|base64url, got "base32"`},
		{"max_ttl < default_ttl", "tokens:\n  default_ttl: 48h\n  max_ttl: 24h\n", `keystile.yaml:3:3: tokens.max_ttl: must be >= tokens.default_ttl (48h0m0s), got 24h0m0s`},
		{"max_ttl < explicit default_ttl only", "tokens:\n  default_ttl: 1000h\n", `keystile.yaml:1:1: tokens.max_ttl: must be >= tokens.default_ttl`},
		{"listen not host:port", "gateway:\n  listen: 7878\n", `keystile.yaml:2:3: gateway.listen: must be a string, got an integer`},
		{"listen no port", "gateway:\n  listen: localhost\n", `keystile.yaml:2:3: gateway.listen: must be host:port`},
		{"listen bad port", "gateway:\n  listen: \"127.0.0.1:http\"\n", `keystile.yaml:2:3: gateway.listen: invalid port "http"`},
		{"negative uid", "admin:\n  allowed_uids: [1000, -1]\n", `keystile.yaml:2:24: admin.allowed_uids[1]: uid must be >= 0, got -1`},
		{"log level", "log:\n  level: verbose\n", `keystile.yaml:2:3: log.level: must be one of debug|info|warn|error, got "verbose"`},
		{"login on dmarket", base + "    login: certlogin\n", `keystile.yaml:6:5: venues.dm.login: only valid for type betfair`},
		{"sigv4 missing region", "venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: sigv4\n      sigv4: {service: s3}\n", `keystile.yaml:8:7: venues.g.auth.sigv4.region: required for scheme sigv4`},
		{"oauth2 http token url", "venues:\n  s:\n    type: stapi\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: oauth2\n      oauth2:\n        token_url: http://auth.example/token\n", `keystile.yaml:9:9: venues.s.auth.oauth2.token_url: must be https://`},
		{"alias unknown", "log:\n  level: *nope\n", `keystile.yaml:`},
		{"two documents", "log: {}\n---\nlog: {}\n", `keystile.yaml: more than one YAML document`},
		{"top level list", "- a\n", `keystile.yaml:1:1: must be a mapping, got a list`},
		{"merge key", "x: &x {level: info}\nlog:\n  <<: *x\n", `keystile.yaml:1:1: x: unknown key "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("keystile.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config returned with error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			for _, e := range Errors(err) {
				if e.Line <= 0 && e.Key != "" {
					t.Errorf("keyed error without a line: %v", e)
				}
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	y := `log:
  level: loud
gateway:
  listen: nope
venues:
  dm:
    type: dmarket
    credential: c
    base_url: http://example.com
    timeouts:
      total: soon
    retry: {max_attempts: 99}
`
	_, err := Parse("k.yaml", []byte(y))
	errs := Errors(err)
	want := []string{
		"k.yaml:2:3: log.level:",
		"k.yaml:4:3: gateway.listen:",
		"k.yaml:9:5: venues.dm.base_url:",
		"k.yaml:11:7: venues.dm.timeouts.total: invalid duration",
		"k.yaml:12:13: venues.dm.retry.max_attempts:",
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i], w)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "k.yaml" || e.Line != 2 || e.Key != "log.level" {
		t.Errorf("errors.As first = %+v", e)
	}
}

func TestValidateWithoutPositions(t *testing.T) {
	c := Default()
	c.Venues = map[string]Venue{"x": {Type: TypeGeneric, Credential: "c", BaseURL: "http://a.example"}}
	err := c.Validate()
	errs := Errors(err)
	if len(errs) != 3 {
		t.Fatalf("errs = %v", err)
	}
	for _, e := range errs {
		if e.Line != 0 || e.File != "" {
			t.Errorf("unexpected position: %+v", e)
		}
	}
	if got := errs[0].Error(); !strings.HasPrefix(got, "venues.x.base_url: must be https://") {
		t.Errorf("got %q", got)
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	y := `x-timeouts: &t {connect: 1s, tls_handshake: 1s, response_header: 2s, total: 3s}
`
	if _, err := Parse("k.yaml", []byte(y)); err == nil {
		t.Fatal("unknown top-level key accepted")
	}
	y = base + "    timeouts: &t {connect: 1s, tls_handshake: 1s, response_header: 2s, total: 3s}\n" +
		"  dm2:\n    type: dmarket\n    credential: c2\n    base_url: https://api.dmarket.com\n    timeouts: *t\n"
	c, err := Parse("k.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if c.Venues["dm2"].Timeouts.Total != 3*time.Second {
		t.Errorf("alias not followed: %+v", c.Venues["dm2"].Timeouts)
	}
}

func TestNoSecretsInSchema(t *testing.T) {
	// Guard: the schema has no field that could hold a secret value.
	var walk func(reflect.Type, string)
	walk = func(rt reflect.Type, path string) {
		switch rt.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			walk(rt.Elem(), path)
		case reflect.Struct:
			for i := range rt.NumField() {
				f := rt.Field(i)
				name := tagName(f)
				if name == "" {
					t.Errorf("%s.%s has no yaml tag", path, f.Name)
				}
				for _, bad := range []string{"password", "api_key", "token", "secret"} {
					if name == bad {
						t.Errorf("%s.%s looks like a secret value", path, name)
					}
				}
				walk(f.Type, path+"."+name)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

// TestProxyHosts: venues.<id>.proxy_hosts only on a sandbox venue whose
// every URL is on loopback, and only real host names.
func TestProxyHosts(t *testing.T) {
	sb := "venues:\n  bn:\n    type: binance\n    credential: c\n    sandbox: true\n    base_url: http://127.0.0.1:9005\n"
	tests := []struct {
		name, yaml, want string // want "" means valid
	}{
		{"sandbox aliases", sb + "    proxy_hosts: [api.binance.com, fapi.binance.com, \"api.binance.com:8443\"]\n", ""},
		{"not a sandbox", "venues:\n  bn:\n    type: binance\n    credential: c\n    base_url: https://api.binance.com\n    proxy_hosts: [api.binance.com]\n",
			"venues.bn.proxy_hosts: only valid with sandbox: true"},
		{"sandbox on a remote host", "venues:\n  bn:\n    type: binance\n    credential: c\n    sandbox: true\n    base_url: https://testnet.binance.vision\n    proxy_hosts: [api.binance.com]\n",
			"venues.bn.proxy_hosts: only valid when every URL of the venue is on a loopback host"},
		{"remote test url", sb + "    test_base_url: https://testnet.binance.vision\n    proxy_hosts: [api.binance.com]\n",
			"only valid when every URL of the venue is on a loopback host"},
		{"url", sb + "    proxy_hosts: [\"https://api.binance.com\"]\n", "venues.bn.proxy_hosts[0]: must be a venue's host name"},
		{"wildcard", sb + "    proxy_hosts: [\"*.binance.com\"]\n", "venues.bn.proxy_hosts[0]: must be a venue's host name"},
		{"loopback alias", sb + "    proxy_hosts: [localhost]\n", "venues.bn.proxy_hosts[0]: must be a venue's host name"},
		{"bad port", sb + "    proxy_hosts: [\"api.binance.com:0\"]\n", "venues.bn.proxy_hosts[0]: bad port"},
		{"empty", sb + "    proxy_hosts: [\"\"]\n", "venues.bn.proxy_hosts[0]: must be a venue's host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("keystile.yaml", []byte(tt.yaml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
