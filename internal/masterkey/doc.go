// Package masterkey produces the vault's 32-byte root key from one of the
// supported sources, in rough order of strength:
//
//   - passphrase: Argon2id over a passphrase typed at a no-echo prompt or
//     read from KEYSTILE_PASSPHRASE_FILE (e.g. a systemd credential). The
//     salt and cost parameters are stored with the vault; the passphrase
//     and the key are not stored anywhere.
//   - keyring: a random key kept in the OS keyring (Secret Service on
//     Linux, Keychain on macOS). Headless Linux usually has no Secret
//     Service: that is reported as ErrKeyringUnavailable with a hint.
//   - env: KEYSTILE_MASTER_KEY, base64 of 32 random bytes, for containers
//     whose orchestrator injects secrets as environment variables.
//   - file: a random key in a 0600 file next to the data (the embedded
//     default and the weakest: anyone who can read the data directory
//     backup can read the key too; doctor says so). A key file readable
//     by group or others is refused.
//
// Which source a vault uses is recorded at init (Params) so that serve
// loads the key the same way.
package masterkey
