package sign

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

func TestHeaderKeyBearer(t *testing.T) {
	tests := []struct {
		name    string
		apply   func(r *http.Request) error
		header  string
		want    string
		wantErr error
	}{
		{"header key", func(r *http.Request) error { return HeaderKey(r, "X-API-Key", secret.FromString("k1")) }, "X-Api-Key", "k1", nil},
		{"header key replaces", func(r *http.Request) error {
			r.Header.Set("X-API-Key", "bot-value")
			return HeaderKey(r, "X-API-Key", secret.FromString("k1"))
		}, "X-Api-Key", "k1", nil},
		{"bad header name", func(r *http.Request) error { return HeaderKey(r, "X Key", secret.FromString("k1")) }, "", "", ErrInvalidHeaderName},
		{"empty key", func(r *http.Request) error { return HeaderKey(r, "X-Key", secret.Value{}) }, "", "", ErrEmptyKey},
		{"crlf in key", func(r *http.Request) error { return HeaderKey(r, "X-Key", secret.FromString("a\r\nX-Evil: 1")) }, "", "", ErrInvalidValue},
		{"bearer", func(r *http.Request) error { return Bearer(r, secret.FromString("tok.en-1")) }, "Authorization", "Bearer tok.en-1", nil},
		{"bearer replaces bot token", func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer kst_live_x")
			return Bearer(r, secret.FromString("real"))
		}, "Authorization", "Bearer real", nil},
		{"bearer with space", func(r *http.Request) error { return Bearer(r, secret.FromString("a b")) }, "", "", ErrInvalidValue},
		{"basic colon in user", func(r *http.Request) error { return Basic(r, secret.FromString("a:b"), secret.FromString("p")) }, "", "", ErrInvalidValue},
		{"basic empty password ok", func(r *http.Request) error { return Basic(r, secret.FromString("u"), secret.Value{}) }, "Authorization", "Basic dTo=", nil},
		{"nil request", func(*http.Request) error { return Bearer(nil, secret.FromString("x")) }, "", "", ErrNilRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
			err := tt.apply(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && r.Header.Get(tt.header) != tt.want {
				t.Fatalf("%s = %q, want %q", tt.header, r.Header.Get(tt.header), tt.want)
			}
		})
	}
}

func TestQueryKey(t *testing.T) {
	tests := []struct{ name, query, want string }{
		{"append", "b=2&a=1", "b=2&a=1&api_key=s%2Fk+y"},
		{"replace keeps order", "b=2&api_key=bot&a=1", "b=2&api_key=s%2Fk+y&a=1"},
		{"drops duplicates", "api_key=x&b=2&api_key=y", "api_key=s%2Fk+y&b=2"},
		{"empty", "", "api_key=s%2Fk+y"},
		{"escaped key name matches", "api%5Fkey=x&z=%20", "api_key=s%2Fk+y&z=%20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://example.com/p?"+tt.query, nil)
			if err := QueryKey(r, "api_key", secret.FromString("s/k y")); err != nil {
				t.Fatal(err)
			}
			if r.URL.RawQuery != tt.want {
				t.Fatalf("query = %q, want %q", r.URL.RawQuery, tt.want)
			}
		})
	}
}

func TestHMACValidate(t *testing.T) {
	ok := HMAC{Template: "{timestamp}{method}{path}?{query}\\n{body}{nonce}{api_key}\\{x\\}\\\\", SignatureHeader: "X-Sig"}
	tests := []struct {
		name    string
		h       HMAC
		wantErr error
		mention string
	}{
		{"ok", ok, nil, ""},
		{"empty template", HMAC{SignatureHeader: "X"}, ErrInvalidTemplate, "empty"},
		{"unknown placeholder", HMAC{Template: "{time}", SignatureHeader: "X"}, ErrInvalidTemplate, "{time}"},
		{"unclosed", HMAC{Template: "{body", SignatureHeader: "X"}, ErrInvalidTemplate, "unclosed"},
		{"stray close", HMAC{Template: "a}", SignatureHeader: "X"}, ErrInvalidTemplate, "}"},
		{"bad escape", HMAC{Template: `a\q`, SignatureHeader: "X"}, ErrInvalidTemplate, `\q`},
		{"dangling escape", HMAC{Template: `a\`, SignatureHeader: "X"}, ErrInvalidTemplate, "dangling"},
		{"algorithm", HMAC{Template: "{body}", Algorithm: "md5", SignatureHeader: "X"}, ErrUnsupported, "md5"},
		{"encoding", HMAC{Template: "{body}", Encoding: "base32", SignatureHeader: "X"}, ErrUnsupported, "base32"},
		{"key encoding", HMAC{Template: "{body}", KeyEncoding: "pem", SignatureHeader: "X"}, ErrUnsupported, "pem"},
		{"timestamp format", HMAC{Template: "{body}", TimestampFormat: "unix_ns", SignatureHeader: "X"}, ErrUnsupported, "unix_ns"},
		{"no destination", HMAC{Template: "{body}"}, ErrUnsupported, "exactly one"},
		{"two destinations", HMAC{Template: "{body}", SignatureHeader: "X", SignatureQueryParam: "s"}, ErrUnsupported, "exactly one"},
		{"bad header", HMAC{Template: "{body}", SignatureHeader: "X Sig"}, ErrUnsupported, "X Sig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.Validate()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestHMACPlaceholdersAndOutputs(t *testing.T) {
	now := time.Date(2024, 3, 5, 6, 7, 8, 901e6, time.UTC)
	key := secret.FromString("secret")
	tests := []struct {
		name    string
		h       HMAC
		url     string
		wantMsg string // the exact string signed
		wantSig func(msg string) string
		check   func(t *testing.T, r *http.Request, sig string)
	}{
		{
			name:    "kraken-like headers, base64, iso timestamp",
			h:       HMAC{Template: "{timestamp}{method}{path}{query}{body}", Encoding: "base64", TimestampFormat: "iso8601_ms", TimestampHeader: "X-TS", KeyHeader: "X-Key", SignatureHeader: "X-Sig", SignaturePrefix: "v1="},
			url:     "https://venue.example/a%2Fb/c?z=1&a=%20",
			wantMsg: "2024-03-05T06:07:08.901ZPOST/a%2Fb/cz=1&a=%20BODY",
			check: func(t *testing.T, r *http.Request, sig string) {
				if r.Header.Get("X-TS") != "2024-03-05T06:07:08.901Z" || r.Header.Get("X-Key") != "AK" || r.Header.Get("X-Sig") != "v1="+sig {
					t.Fatalf("headers = %v", r.Header)
				}
			},
		},
		{
			name:    "nonce, api key, escapes, unix, base64url sha512",
			h:       HMAC{Template: `{nonce}\n{api_key}\t{timestamp}\{x\}`, Algorithm: "sha512", Encoding: "base64url", TimestampFormat: "unix", NonceHeader: "X-Nonce", SignatureHeader: "X-Sig"},
			url:     "https://venue.example/",
			wantMsg: "n-1\nAK\t1709618828{x}",
			check: func(t *testing.T, r *http.Request, sig string) {
				if r.Header.Get("X-Nonce") != "n-1" || r.Header.Get("X-Sig") != sig {
					t.Fatalf("headers = %v", r.Header)
				}
			},
		},
		{
			name:    "timestamp query param then signature last",
			h:       HMAC{Template: "{query}{body}", TimestampQueryParam: "timestamp", SignatureQueryParam: "signature"},
			url:     "https://venue.example/o?signature=bot&timestamp=1&symbol=X",
			wantMsg: "timestamp=1709618828901&symbol=XBODY",
			check: func(t *testing.T, r *http.Request, sig string) {
				if r.URL.RawQuery != "timestamp=1709618828901&symbol=X&signature="+sig {
					t.Fatalf("query = %s", r.URL.RawQuery)
				}
			},
		},
		{
			name:    "rfc1123",
			h:       HMAC{Template: "{timestamp}", TimestampFormat: "rfc1123", SignatureHeader: "X-Sig"},
			url:     "https://venue.example/",
			wantMsg: "Tue, 05 Mar 2024 06:07:08 GMT",
			check:   func(*testing.T, *http.Request, string) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.url, strings.NewReader("BODY"))
			if err := tt.h.Sign(r, []byte("BODY"), secret.FromString("AK"), key, now, "n-1"); err != nil {
				t.Fatal(err)
			}
			want := refHMAC(t, tt.h.Algorithm, tt.h.Encoding, "secret", tt.wantMsg)
			tt.check(t, r, want)
		})
	}
}

func TestHMACSignErrors(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	k := secret.FromString("k")
	now := time.Unix(1, 0)
	if err := (HMAC{Template: "{nonce}", SignatureHeader: "S"}).Sign(r, nil, secret.Value{}, k, now, ""); !errors.Is(err, ErrMissingNonce) {
		t.Errorf("missing nonce: %v", err)
	}
	if err := (HMAC{Template: "{api_key}", SignatureHeader: "S"}).Sign(r, nil, secret.Value{}, k, now, ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("missing api key: %v", err)
	}
	if err := (HMAC{Template: "{body}", SignatureHeader: "S"}).Sign(r, nil, secret.Value{}, secret.Value{}, now, ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("missing secret: %v", err)
	}
	if err := (HMAC{Template: "{body}", KeyEncoding: "hex", SignatureHeader: "S"}).Sign(r, nil, secret.Value{}, secret.FromString("zz"), now, ""); !errors.Is(err, ErrKeyEncoding) {
		t.Errorf("bad hex key: %v", err)
	}
	if err := (HMAC{Template: "{body}", SignatureHeader: "S"}).Sign(nil, nil, secret.Value{}, k, now, ""); !errors.Is(err, ErrNilRequest) {
		t.Errorf("nil request: %v", err)
	}
}

func TestSigV4Extras(t *testing.T) {
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	r := httptest.NewRequest(http.MethodPost, "https://example.amazonaws.com/a/./b/../c?b=2&a=%2F+x&a=1", strings.NewReader("{}"))
	r.Host = "example.amazonaws.com"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Amz-Target", "  svc.Op   x ")
	s := SigV4{Region: "us-east-1", Service: "service", ContentSHA256: true}
	if err := s.Sign(r, []byte("{}"), secret.FromString("AKIDEXAMPLE"), secret.FromString("sk"), secret.FromString("TOKEN"), now); err != nil {
		t.Fatal(err)
	}
	auth := r.Header.Get("Authorization")
	if !strings.Contains(auth, "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-target,") {
		t.Fatalf("Authorization = %s", auth)
	}
	if r.Header.Get("X-Amz-Security-Token") != "TOKEN" || r.Header.Get("X-Amz-Content-Sha256") != "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Fatalf("headers = %v", r.Header)
	}
	if r.URL.RawQuery != "b=2&a=%2F+x&a=1" {
		t.Fatalf("query modified: %s", r.URL.RawQuery)
	}
	hdrs, _, err := s.canonicalHeaders(r)
	if err != nil || !strings.Contains(hdrs, "x-amz-target:svc.Op x\n") {
		t.Fatalf("canonical headers = %q %v", hdrs, err)
	}
}

func TestSigV4Canonical(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"sorted by key then value", "b=2&a=z&a=1", "a=1&a=z&b=2"},
		{"reencoded", "k=%2F+x&%7e=~", "k=%2F%20x&~=~"},
		{"utf8 upper hex", "q=%e1%88%b4", "q=%E1%88%B4"},
		{"no value", "flag&x=", "flag=&x="},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := canonicalQuery(tt.in); got != tt.want {
				t.Fatalf("canonicalQuery(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	paths := []struct {
		name string
		s3   bool
		in   string
		want string
	}{
		{"dot segments", false, "/a/./b/../c", "/a/c"},
		{"double encoded", false, "/a%20b", "/a%2520b"},
		{"s3 single encoded", true, "/a%20b/./c", "/a%20b/./c"},
		{"root", false, "", "/"},
		{"trailing slash kept", false, "/a/b/", "/a/b/"},
		{"collapse slashes", false, "/a//b", "/a/b"},
	}
	for _, tt := range paths {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://h/", nil)
			r.URL.Path, r.URL.RawPath = "", ""
			if tt.in != "" {
				u := *r.URL
				if err := setPath(&u, tt.in); err != nil {
					t.Fatal(err)
				}
				r.URL = &u
			}
			if got := (SigV4{S3: tt.s3}).canonicalURI(r); got != tt.want {
				t.Fatalf("canonicalURI(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
