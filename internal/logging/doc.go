// Package logging sets up log/slog for keystile with a redacting handler.
//
// Its part of the security model: keystile's logs must never carry a
// credential, whatever a caller passes to a logger. Every record goes
// through a Handler that, at every level including debug,
//
//   - replaces each registered secret value — raw, hex, standard and URL
//     base64 (padded and raw) and URL-query-escaped, in any ASCII letter
//     case, and for a value of FragmentMinSecret (24) bytes or more any run
//     of FragmentLen bytes of it (half the value, at most 16 bytes: a
//     truncated echo) — with REDACTED in the message and in every
//     string-ish attribute value (strings, errors, fmt.Stringers, []byte,
//     values in groups, and any other value after formatting it with %+v);
//   - redacts the value of attributes whose key names a credential header
//     or parameter (authorization, cookie, x-api-key, signature, password,
//     token, client_secret, ...; case-insensitive, '-' and '_' alike), and
//     inside http.Header, url.Values and *url.URL values redacts those keys
//     while keeping the others (query keys are logged, values of sensitive
//     ones are not);
//   - rewrites anything shaped like a keystile client token
//     (kst_live_… / kst_test_… with 43+ base62 characters) to
//     kst_live_REDACTED / kst_test_REDACTED.
//
// The set of registered values lives in a Redactor owned by the app (no
// globals); the vault registers credentials as it loads them. Values
// shorter than MinSecretLen bytes are not registered: they would match
// too much ordinary text. Redaction is a last line of defence: code
// should still keep secrets in secret.Value, whose textual forms already
// print REDACTED.
package logging
