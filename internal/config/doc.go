// Package config loads and validates keystile.yaml, the one configuration
// file of a keystile server.
//
// Its part of the security model is to make a bad configuration fail loudly
// and completely before anything listens or dials: every key is checked
// (unknown keys, duplicate keys, wrong types and bad durations are errors,
// never silently ignored), and the semantic rules that keep credentials safe
// are enforced here once — upstream URLs must be https:// (plain http only to
// a loopback sandbox), carry no userinfo, query or fragment, TLS is 1.2 or
// better, every timeout is bounded, and signing schemes name only known
// algorithms and template placeholders. All problems are reported together,
// each as an *Error naming the file, line, column and dotted key path, so an
// operator can fix the file in one pass.
//
// The file never holds secret values: venues name a vault credential and the
// field names inside it; the vault resolves them at signing time. Environment
// overrides (KEYSTILE_DATA_DIR and friends) are applied by the CLI, not here.
//
// The zero Config is safe: it configures no venue and no TCP listener, and
// every zero duration or size means "use the documented default" (see
// Default). Parse and Load start from Default and overlay the file.
package config
