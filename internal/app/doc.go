// Package app wires keystile together: it builds every subsystem from the
// configuration (store, master key, vault, tokens, gateway, admin API), owns
// them, and starts and stops them in order. It is the only package that
// imports store implementations, and the only place where subsystems meet;
// there are no globals anywhere else.
//
// Security model: serve disables core dumps and ptrace-style dumping before
// the master key is loaded, the data directory must be 0700 and owned by the
// running user, and the root key is wiped from memory as soon as the vault
// has unwrapped its keyring. A data dir is self-contained: the master key
// file is recorded relative to it, and two key files holding different
// keys are an error naming both rather than a silent choice
// (ResolveKeyFile). Backups (Backup, Restore) never hold the master key.
package app
