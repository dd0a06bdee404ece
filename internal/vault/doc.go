// Package vault keeps venue credentials encrypted at rest and hands out
// operations on them, never key bytes.
//
// Key hierarchy (envelope encryption):
//
//	root key (from a master-key source: key file, passphrase via Argon2id,
//	          OS keyring, or KEYSTILE_MASTER_KEY)
//	  └─ key-encryption keys (KEKs), versioned, stored wrapped by the root key
//	       ├─ system keys (fingerprint key, metadata MAC key, ...)
//	       └─ one random data key (DEK) per credential version
//	            └─ each field of that version, sealed separately
//
// Every seal is XChaCha20-Poly1305 with a random 192-bit nonce. The
// associated data binds each ciphertext to where it belongs: a field to its
// credential name, field name and version; a data key to its credential,
// version and KEK version; a KEK to its version. A ciphertext edited by one
// byte, moved to another row, or relabelled with another version therefore
// fails to open with ErrIntegrity — never yields wrong plaintext. The
// credential metadata row (current version, state) carries an HMAC so that
// rolling the current version back is detected too.
//
// Credentials are small maps of named fields (api_key, secret, ...). Set and
// Rotate add a version (the newest KeepVersions are kept); Revoke destroys
// every version (crypto-shredding: the wrapped data keys are deleted) and,
// with compromised=true, remembers a keyed fingerprint of each value so the
// same value is refused if anyone sets it again. Rekey generates a new KEK
// and rewraps every data key and system key while the vault stays in use.
//
// Plaintext exists only inside WithCredential's callback. Opened credentials
// are cached in memory for CacheTTL (so signing does not pay for decryption
// on each request) and wiped, best-effort, when evicted or changed.
package vault
