// Package postgres implements the stores the domain packages declare
// (vault.Store, token.Store, ledger.Store, ...) on PostgreSQL through pgx,
// for keystile deployments that run several gateway replicas on one data
// store. It mirrors store/sqlite: the same contracts, checked by the same
// contract suites (store/storetest), with PostgreSQL's transactions, row
// locks and advisory locks where SQLite relies on its single writer.
//
// Migrations are embedded, versioned (NNNN_description.sql) and applied
// under a session advisory lock, so two replicas starting at once apply
// each migration exactly once.
//
// Security model: as for every store, only sealed bytes (ciphertext,
// wrapped keys) and digests are stored; the DSN may carry a password and is
// never logged or put in an error (errors name the host and database only).
package postgres
