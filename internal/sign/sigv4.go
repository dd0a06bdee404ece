package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// SigV4 signs requests with AWS Signature Version 4 (header form).
// The request's Host, every x-amz-* header and Content-Type (if present) are
// signed; X-Amz-Date (and X-Amz-Security-Token when a session token is
// given) are set first. The query is signed in AWS's canonical (sorted,
// RFC 3986 encoded) form, which the server rebuilds identically, so the
// query as sent is not modified.
type SigV4 struct {
	Region  string
	Service string
	// ContentSHA256 also sends and signs X-Amz-Content-Sha256 (required by S3).
	ContentSHA256 bool
	// S3 selects S3 path rules: the path is encoded once and not normalized.
	S3 bool
}

// Sign adds X-Amz-Date and Authorization to r. body must be the exact bytes
// sent. sessionToken may be zero.
func (v SigV4) Sign(r *http.Request, body []byte, accessKey, secretKey, sessionToken secret.Value, now time.Time) error {
	if r == nil || r.URL == nil {
		return ErrNilRequest
	}
	if v.Region == "" || v.Service == "" || strings.ContainsAny(v.Region+v.Service, "/ \r\n") {
		return fmt.Errorf("%w: sigv4 region %q service %q", ErrInvalidValue, v.Region, v.Service)
	}
	if accessKey.IsZero() || secretKey.IsZero() {
		return fmt.Errorf("%w: sigv4", ErrEmptyKey)
	}
	if hasCTL(accessKey.Reveal()) || strings.ContainsAny(string(accessKey.Reveal()), " ,/=") || hasCTL(sessionToken.Reveal()) {
		return fmt.Errorf("%w: sigv4", ErrInvalidValue)
	}
	now = now.UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	payload := sha256.Sum256(body)
	payloadHex := hex.EncodeToString(payload[:])

	r.Header.Del("Authorization")
	r.Header.Set("X-Amz-Date", amzDate)
	if !sessionToken.IsZero() {
		r.Header.Set("X-Amz-Security-Token", string(sessionToken.Reveal()))
	}
	if v.ContentSHA256 {
		r.Header.Set("X-Amz-Content-Sha256", payloadHex)
	}

	canonHeaders, signedHeaders, err := v.canonicalHeaders(r)
	if err != nil {
		return err
	}
	creq := strings.Join([]string{
		method(r),
		v.canonicalURI(r),
		canonicalQuery(r.URL.RawQuery),
		canonHeaders,
		signedHeaders,
		payloadHex,
	}, "\n")
	creqHash := sha256.Sum256([]byte(creq))
	scope := day + "/" + v.Region + "/" + v.Service + "/aws4_request"
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(creqHash[:])

	k := make([]byte, 0, 4+secretKey.Len())
	k = append(k, "AWS4"...)
	k = append(k, secretKey.Reveal()...)
	kDate := hmacSHA256(k, []byte(day))
	secret.Wipe(k)
	kRegion := hmacSHA256(kDate, []byte(v.Region))
	kService := hmacSHA256(kRegion, []byte(v.Service))
	kSigning := hmacSHA256(kService, []byte("aws4_request"))
	sig := hex.EncodeToString(hmacSHA256(kSigning, []byte(sts)))
	for _, b := range [][]byte{kDate, kRegion, kService, kSigning} {
		secret.Wipe(b)
	}
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+string(accessKey.Reveal())+"/"+scope+
		", SignedHeaders="+signedHeaders+", Signature="+sig)
	return nil
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func (v SigV4) canonicalHeaders(r *http.Request) (string, string, error) {
	vals := map[string][]string{"host": {hostOf(r)}}
	for name, vs := range r.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-amz-") || l == "content-type" {
			vals[l] = vs
		}
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		parts := make([]string, len(vals[n]))
		for i, x := range vals[n] {
			if strings.ContainsAny(x, "\r\n\x00") {
				return "", "", fmt.Errorf("%w: sigv4 header %s", ErrInvalidValue, n)
			}
			parts[i] = strings.Join(strings.Fields(x), " ")
		}
		b.WriteString(n + ":" + strings.Join(parts, ",") + "\n")
	}
	return b.String(), strings.Join(names, ";"), nil
}

// canonicalURI encodes the path per AWS rules: for most services the
// escaped path is normalized and each segment encoded again; for S3 the
// decoded path is encoded once.
func (v SigV4) canonicalURI(r *http.Request) string {
	if v.S3 {
		return awsEscape(r.URL.Path, false)
	}
	p := removeDotSegments(escapedPath(r))
	return awsEscape(p, false)
}

func removeDotSegments(p string) string {
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch {
		case s == ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case s == "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case s == "" && i > 0 && i < len(segs)-1:
			// collapse "//"
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

// canonicalQuery decodes the raw query and re-encodes it sorted by key,
// then value.
func canonicalQuery(raw string) string {
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range splitQuery(raw) {
		if part == "" {
			continue
		}
		k, val, _ := strings.Cut(part, "=")
		if d, err := url.QueryUnescape(k); err == nil {
			k = d
		}
		if d, err := url.QueryUnescape(val); err == nil {
			val = d
		}
		pairs = append(pairs, kv{awsEscape(k, true), awsEscape(val, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&")
}

// awsEscape percent-encodes everything but RFC 3986 unreserved characters
// (and '/' unless encodeSlash), uppercase hex.
func awsEscape(s string, encodeSlash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}
