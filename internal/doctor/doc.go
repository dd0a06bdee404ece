// Package doctor is keystile's security checklist: the advice every
// credential-handling guide repeats (keys out of .env files and shell
// history, owner-only permissions, HTTPS and timeouts, short-lived scoped
// tokens, rotation every 30-90 days, no core dumps) checked by a machine.
//
// Each check has a stable id, a severity, a result (pass, warn, fail or
// skip) and a fix hint. A check that cannot run says skip and why: doctor
// never reports a pass it did not verify. Doctor reads; it changes nothing.
// It never prints a secret: findings in files name the file, the line and
// the kind of secret, and vault values are recognised by their keyed
// fingerprints, so the value itself is neither shown nor needed in the
// clear. Everything doctor looks at (home and working directories, uid,
// /proc, git, the running server, the vault) is injected through Options,
// so that the checks are testable on fixtures.
package doctor
