// Package runexec runs a bot for `keystile exec`: it starts the child with
// an environment that holds what the bot needs to use the gateway (its URL
// and a short-lived kst_ token) and, for legacy bots only, real secrets the
// operator injected by reference; it strips from the child's environment
// every inherited variable that looks like a credential (LooksSecret:
// keystile's master-key variables always, others unless the operator keeps
// them); and it masks every injected
// value, in its raw, hex, base64 and URL-escaped forms, in the child's
// stdout and stderr as they stream.
//
// Masking is a safety net, not a boundary: a child that holds a secret can
// always exfiltrate it. What the net catches is the common accident of a
// bot logging its own configuration. A value split across writes is still
// caught: the Masker holds back the longest tail that could start a
// secret, and releases it when the next bytes rule the secret out, or
// after a short idle delay (a held tail of four bytes or more is then
// replaced by the mask rather than printed). Each injection is recorded
// (variable names, references and times, never values) so that `keystile
// doctor` can report that real secrets left the vault.
package runexec
