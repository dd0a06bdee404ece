// Package store holds what every storage implementation shares: the
// sentinel errors that domain packages branch on. The contracts themselves
// are declared by the domain packages that consume them (vault.Store,
// token.Store, ...), and the implementations live below this directory,
// named for their technology (store/sqlite, later store/postgres). Only
// package app imports an implementation.
//
// Security model: stores only ever see sealed bytes (ciphertext, wrapped
// keys) and digests; nothing secret is stored in plaintext.
package store
