// Package scan is keystile's leak scanner: it looks for credentials that
// escaped into files, git history or a staged change.
//
// Three detectors run over every line:
//
//   - kst_ tokens, recognised offline by their prefix, length, alphabet and
//     CRC-32 checksum (token.LooksValid), so a look-alike is never reported;
//   - the community rule set of gitleaks (its default rule file, embedded
//     verbatim under its MIT license, evaluated by this package's own engine
//     in rules.go; the tests hold it to gitleaks' findings), for the secrets
//     of other services;
//   - the exact values held in this keystile's vault. The scanner never
//     handles those values: it asks the vault for the keyed fingerprints
//     (HMAC under a key only the vault holds) and lengths of what it stores,
//     cuts each line into candidate strings of exactly those lengths (also
//     hex and base64 forms), and fingerprints the candidates with the same
//     key. A match names the credential and field, never the value.
//
// Findings carry file, line, detector, rule and a masked preview of at most
// the first and last four characters (fewer for short values, none below
// eight), and a fingerprint of file, rule and a hash of the secret that a
// baseline file uses to suppress known findings without storing any value.
//
// Git history and staged changes are read from git's own diff output
// (ParseDiff): the lines each commit adds, as gitleaks reads them.
package scan
